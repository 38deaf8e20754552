"""Data for the chapters: real data sets from ``ATTNBOOK_DATA`` when present, generated analogues otherwise."""
