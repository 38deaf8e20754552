"""A small simulated bAbI world (chapter 1): people walk between rooms, pick up and drop objects, and are asked.

`generate_task` writes tasks 1-3 of bAbI (Weston et al. 2015) in the real files' text format, seeded, so that
`attnbook.data.babi.parse_babi` reads both and chapter 1 runs without the data set.
"""

from __future__ import annotations

import random

PEOPLE = ("Mary", "John", "Daniel", "Sandra")
PLACES = ("bathroom", "hallway", "kitchen", "office", "garden", "bedroom")
OBJECTS = ("football", "apple", "milk")
MOVES = ("moved to", "went to", "went back to", "journeyed to", "travelled to")
GETS = ("got", "grabbed", "picked up", "took")
DROPS = ("dropped", "put down", "discarded", "left")


class _World:
    """People in rooms holding objects; every event is a story line, and the world remembers which lines
    established each fact (the supporting facts of a question)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.lines: list[str] = []
        self.at: dict[str, tuple[str, int]] = {}  # person -> (place, line ID of the move)
        self.holder: dict[str, tuple[str, int]] = {}  # object -> (person, line ID of the pick-up)
        self.dropped: dict[str, tuple[str, list[int]]] = {}  # object -> (place, line IDs)
        self.history: dict[str, list[tuple[str, list[int]]]] = {o: [] for o in OBJECTS}  # object -> places

    def say(self, text: str) -> int:
        self.lines.append(f"{len(self.lines) + 1} {text}")
        return len(self.lines)

    def where(self, obj: str) -> tuple[str, list[int]] | None:
        """Place of an object and the lines that tell it, or None if unknown."""
        if obj in self.holder:
            person, got = self.holder[obj]
            if person not in self.at:
                return None
            place, moved = self.at[person]
            return place, sorted({got, moved})
        return self.dropped.get(obj)

    def _record(self, obj: str) -> None:
        now = self.where(obj)
        if now is not None and (not self.history[obj] or self.history[obj][-1][0] != now[0]):
            self.history[obj].append(now)

    def act(self, objects: bool) -> None:
        """One random event: a move, or (with ``objects``) a pick-up or a drop."""
        person = self.rng.choice(PEOPLE)
        held = [o for o, (p, _) in self.holder.items() if p == person]
        free = [o for o in OBJECTS if o not in self.holder and (o not in self.dropped or
                                                                self.dropped[o][0] == self.at.get(person, ("",))[0])]
        roll = self.rng.random()
        if objects and person in self.at and free and roll < 0.25:
            obj = self.rng.choice(free)
            line = self.say(f"{person} {self.rng.choice(GETS)} the {obj} there.")
            self.dropped.pop(obj, None)
            self.holder[obj] = (person, line)
            self._record(obj)
        elif objects and held and roll < 0.4:
            obj = self.rng.choice(held)
            line = self.say(f"{person} {self.rng.choice(DROPS)} the {obj}.")
            del self.holder[obj]
            self.dropped[obj] = (self.at[person][0], sorted({line, self.at[person][1]}))
        else:
            place = self.rng.choice([p for p in PLACES if p != self.at.get(person, ("",))[0]])
            self.at[person] = (place, self.say(f"{person} {self.rng.choice(MOVES)} the {place}."))
            for obj in held:
                self._record(obj)


def _question_1(world: _World) -> str | None:
    known = [p for p in PEOPLE if p in world.at]
    if not known:
        return None
    person = world.rng.choice(known)
    place, line = world.at[person]
    return f"Where is {person}? \t{place}\t{line}"


def _question_2(world: _World) -> str | None:
    known = [(o, w) for o in OBJECTS if (w := world.where(o)) is not None]
    if not known:
        return None
    obj, (place, lines) = world.rng.choice(known)
    return f"Where is the {obj}? \t{place}\t{' '.join(map(str, lines))}"


def _question_3(world: _World) -> str | None:
    known = [o for o in OBJECTS if len(world.history[o]) >= 2 and world.where(o) is not None
             and world.where(o)[0] == world.history[o][-1][0]]
    if not known:
        return None
    obj = world.rng.choice(known)
    (before, lines_before), (now, lines_now) = world.history[obj][-2:]
    lines = sorted(set(lines_before) | set(lines_now))
    return f"Where was the {obj} before the {now}? \t{before}\t{' '.join(map(str, lines))}"


GENERATORS = {1: (_question_1, False, 2), 2: (_question_2, True, 3), 3: (_question_3, True, 6)}


def generate_task(task: int, questions: int = 1000, seed: int = 0, per_story: int = 5) -> str:
    """Text of ``questions`` bAbI-style questions for task 1, 2 or 3, in the bAbI file format, seeded.

    Task 1 asks where a person is (one supporting fact), task 2 where an object is (the pick-up and the
    carrier's move: two facts), task 3 where an object was before its current room (three facts).
    """
    if task not in GENERATORS:
        raise ValueError(f"task: the generator covers tasks {sorted(GENERATORS)}, got {task!r}")
    if questions < 1:
        raise ValueError(f"questions: expected a positive count, got {questions}")
    ask, objects, gap = GENERATORS[task]
    rng = random.Random(seed)
    lines: list[str] = []
    asked = 0
    while asked < questions:
        world = _World(rng)
        for _ in range(min(per_story, questions - asked)):
            question = None
            while question is None:
                for _ in range(rng.randint(1, gap)):
                    world.act(objects)
                question = ask(world)
            world.say(question)
            asked += 1
        lines.extend(world.lines)
    return "\n".join(lines) + "\n"
