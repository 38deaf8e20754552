"""bAbI: the parser on hand-written and real files, its errors, the offline generator, and vectorisation."""

import pytest
import torch

from attnbook.data import babi
from attnbook.data.babi import (
    BabiFormatError,
    QA,
    Vocab,
    generate_task,
    load_task,
    parse_babi,
    read_babi,
    task_file,
    tokenize,
    vectorize,
)
from attnbook.data.files import DataFileError, find_data

STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Mary travelled to the office.
6 Where is Mary? \toffice\t5
1 Sandra got the apple there.
2 Sandra journeyed to the garden.
3 Where is the apple? \tgarden\t1 2
"""


def test_parse_resets_ids_and_counts_question_lines():
    items = parse_babi(STORY.splitlines())
    assert len(items) == 3
    first, second, third = items
    assert first.story == (("mary", "moved", "to", "the", "bathroom"), ("john", "went", "to", "the", "hallway"))
    assert first.question == ("where", "is", "mary") and first.answer == "bathroom" and first.supporting == (0,)
    # line 5 is the 4th story sentence: question line 3 is counted by the IDs but is not a sentence
    assert len(second.story) == 4 and second.supporting == (3,) and second.story[3][0] == "mary"
    assert second.answer == "office"
    assert len(third.story) == 2 and third.supporting == (0, 1) and third.answer == "garden"


def test_tokenize_drops_punctuation_and_case():
    assert tokenize("Where is the Apple?") == ("where", "is", "the", "apple")


@pytest.mark.parametrize(
    "lines,line_no,fragment",
    [
        (["1 Mary moved to the bathroom.", "x John went."], 2, "integer ID"),
        (["1 Mary moved to the bathroom.", "3 John went to the hallway."], 2, "expected ID 1 (new story) or 2"),
        (["1 Mary moved to the bathroom.", "2 Where is Mary?\tbathroom"], 2, "supporting IDs"),
        (["1 Mary moved to the bathroom.", "2 Where is Mary?\tbathroom\tone"], 2, "must be integers"),
        (["1 Mary moved to the bathroom.", "2 Where is Mary?\tbathroom\t2"], 2, "not earlier story lines"),
        (["1 Where is Mary?\tkitchen\t1", "2 Mary went home."], 1, "not earlier story lines"),
    ],
)
def test_malformed_line_names_file_and_line(lines, line_no, fragment):
    with pytest.raises(BabiFormatError) as info:
        parse_babi(lines, source="qa_demo.txt")
    assert f"qa_demo.txt, line {line_no}" in str(info.value) and fragment in str(info.value)


def test_read_babi_names_the_file(tmp_path):
    path = tmp_path / "broken.txt"
    path.write_text("1 Mary moved to the bathroom.\n2 Where is Mary?\tbathroom\n")
    with pytest.raises(BabiFormatError, match="broken.txt, line 2"):
        read_babi(path)


def test_task_file_names_and_errors():
    assert task_file(2, "train") == "qa2_two-supporting-facts_train.txt"
    assert task_file(20, "test") == "qa20_agents-motivations_test.txt"
    with pytest.raises(ValueError, match="task"):
        task_file(21, "train")
    with pytest.raises(ValueError, match="split"):
        task_file(1, "valid")
    assert set(babi.SHA256) == {task_file(t, s) for t in range(1, 21) for s in ("train", "test")}


# ------------------------------------------------------------------------------------------- real data


def real_path(task, split):
    return find_data(f"babi/en/{task_file(task, split)}", babi.SHA256[task_file(task, split)])


@pytest.mark.skipif(real_path(1, "train") is None, reason="real bAbI files not in ATTNBOOK_DATA")
@pytest.mark.parametrize("task", range(1, 21))
def test_real_tasks_parse_with_checksums(task):
    train, test, source = load_task(task)
    assert len(train) == len(test) == 1000
    assert "(real)" in source
    assert all(len(qa.supporting) >= 1 for qa in train)
    assert all(max(qa.supporting) < len(qa.story) for qa in train)


@pytest.mark.skipif(real_path(2, "train") is None, reason="real bAbI files not in ATTNBOOK_DATA")
def test_real_task_2_first_question():
    _, test, _ = load_task(2)
    first = test[0]
    assert first.question == ("where", "is", "the", "milk") and first.answer == "hallway"
    # "Mary got the milk there." (line 1) and "Mary travelled to the hallway." (line 4)
    assert [first.story[i] for i in first.supporting] == [
        ("mary", "got", "the", "milk", "there"), ("mary", "travelled", "to", "the", "hallway")]


def test_corrupt_file_raises(tmp_path, monkeypatch):
    folder = tmp_path / "babi" / "en"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        (folder / task_file(1, split)).write_text(STORY)
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    with pytest.raises(DataFileError, match="SHA-256"):
        load_task(1)


def test_fallback_when_data_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNBOOK_DATA", str(tmp_path))
    train, test, source = load_task(2, questions=50, seed=3)
    assert len(train) == len(test) == 50 and "generated" in source
    assert train != test
    with pytest.raises(FileNotFoundError, match="no offline generator"):
        load_task(7)


# ------------------------------------------------------------------------------------------- generator


@pytest.mark.parametrize("task", [1, 2, 3])
def test_generator_is_seeded_and_parsable(task):
    text = generate_task(task, 120, seed=5)
    assert text == generate_task(task, 120, seed=5)
    assert text != generate_task(task, 120, seed=6)
    items = parse_babi(text.splitlines(), source="generated")
    assert len(items) == 120
    needed = {1: {1}, 2: {2}, 3: {3, 4}}[task]
    assert {len(qa.supporting) for qa in items} <= needed


@pytest.mark.parametrize("task", [1, 2, 3])
def test_generated_answers_follow_from_supporting_facts(task):
    for qa in parse_babi(generate_task(task, 300, seed=1).splitlines()):
        facts = [qa.story[i] for i in qa.supporting]
        if task == 1:  # the supporting fact is the person's last move, to the answer
            person = qa.question[-1]
            moves = [i for i, s in enumerate(qa.story) if s[0] == person]
            assert qa.supporting == (moves[-1],) and facts[0][-1] == qa.answer
        elif task == 2:  # one fact names the object, the other the room it is in
            obj = qa.question[-1]
            assert any(obj in f for f in facts) and any(f[-1] == qa.answer for f in facts)
        else:  # the object was in the answer's room before the asked room
            obj, now = qa.question[3], qa.question[-1]
            assert qa.answer != now and any(obj in f for f in facts)
            assert any(f[-1] == qa.answer for f in facts) and any(f[-1] == now for f in facts)


def test_generator_errors():
    with pytest.raises(ValueError, match="tasks"):
        generate_task(4)
    with pytest.raises(ValueError, match="questions"):
        generate_task(1, 0)


# ------------------------------------------------------------------------------------------- tensors


def test_vectorize_orders_slots_from_the_latest_sentence():
    items = parse_babi(STORY.splitlines())
    vocab = Vocab(items)
    assert vocab.words[0] == babi.PAD and len(vocab) == len(set(vocab.words))
    batch = vectorize(items, vocab, memory_size=3)
    assert batch.stories.shape == (3, 3, 6) and batch.queries.shape == (3, 4)
    # second question: 4 sentences, only the 3 latest kept; slot 0 = "mary travelled to the office"
    assert vocab.words[batch.stories[1, 0, 0]] == "mary" and vocab.words[batch.stories[1, 0, 4]] == "office"
    assert batch.memory_mask.tolist() == [[True, True, False], [True, True, True], [True, True, False]]
    assert batch.supporting.tolist() == [[False, True, False], [True, False, False], [True, True, False]]
    assert batch.stories[0, 2].eq(0).all()  # padding slot
    assert [vocab.words[a] for a in batch.answers] == ["bathroom", "office", "garden"]
    assert len(batch[torch.tensor([0, 2])]) == 2


def test_supporting_fact_outside_memory_is_dropped():
    items = [QA(tuple((f"w{i}",) for i in range(5)), ("q",), "w0", (0,))]
    batch = vectorize(items, Vocab(items), memory_size=2)
    assert not batch.supporting.any() and batch.memory_mask.all()
