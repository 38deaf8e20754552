"""bAbI question answering (Weston et al. 2015) for chapter 1: a parser for the v1.2 files and a generator.

The format, one line each: ``ID sentence`` for a story line, ``ID question<TAB>answer<TAB>supporting IDs``
for a question. IDs start at 1 and reset at every new story; supporting IDs count every line of the story,
question lines included. A question is asked about all the story lines before it (its "story").

`load_task` reads the real 1k files from ``$ATTNBOOK_DATA/babi/en/`` (SHA-256 checked) and, for tasks 1-3,
falls back to `generate_task` (`attnbook.data.babi_world`), which simulates the same little world (people
walking between rooms, picking up and dropping objects) and writes stories in the same text format, so one
parser reads both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from attnbook.data.babi_world import GENERATORS, generate_task  # noqa: F401 (generate_task re-exported)
from attnbook.data.files import DataFileError, describe_source, find_data

TASK_NAMES = {
    1: "single-supporting-fact", 2: "two-supporting-facts", 3: "three-supporting-facts",
    4: "two-arg-relations", 5: "three-arg-relations", 6: "yes-no-questions", 7: "counting",
    8: "lists-sets", 9: "simple-negation", 10: "indefinite-knowledge", 11: "basic-coreference",
    12: "conjunction", 13: "compound-coreference", 14: "time-reasoning", 15: "basic-deduction",
    16: "basic-induction", 17: "positional-reasoning", 18: "size-reasoning", 19: "path-finding",
    20: "agents-motivations",
}

# SHA-256 of the bAbI v1.2 English 1k files (listed in the data README).
SHA256 = {
    "qa1_single-supporting-fact_train.txt": "c64ba9b1a49bbb111ffc4cd2ae4f129d25c012399dd7ade9679eea464b9afb05",
    "qa1_single-supporting-fact_test.txt": "55acf66cef2f6d798e2aa1d056e1ec8f24e910ea9215b639450574321132959b",
    "qa2_two-supporting-facts_train.txt": "a4978af5bc0dc30191810e7c9949aaa6eae939ed0f6beb9fcb5f4330c2a27860",
    "qa2_two-supporting-facts_test.txt": "eff93fb9cd81ba02eb765772cf7cc269769ed44ec71cbbbc19cfb16ee5eba0f6",
    "qa3_three-supporting-facts_train.txt": "a6e78019f36a02a7ed71fe6aaded0b563ff09c8deec392931801fcd9c6af4d60",
    "qa3_three-supporting-facts_test.txt": "17795c977100baf8188f386522ae301b62d6c1a13efc01b3aea781e588b4d57f",
    "qa4_two-arg-relations_train.txt": "c9370502d85fa382f32d1fea2111e817f81ae9e3e79eb2924a1a5392a90417fa",
    "qa4_two-arg-relations_test.txt": "07f0ca18ddeea9eed4ba6d59e162adcb0ce44815721114b3540d92825509331e",
    "qa5_three-arg-relations_train.txt": "086cd59c3ca9677bfac3d6a22ca5853c76a5c1fbae3159c7c4a6aef759a74ec0",
    "qa5_three-arg-relations_test.txt": "ec825c1c8a76e63a31f0d7a7763cd63740e98332fa9bdf246a19068949bd5f97",
    "qa6_yes-no-questions_train.txt": "5a133115ee35d475776df703ff605d145b11effbcdbf7e74861f9d5639246a5a",
    "qa6_yes-no-questions_test.txt": "b108b16f1eccbd1c24df6dca2649079a7b2f10af7fd12d4c45a3393802de59e3",
    "qa7_counting_train.txt": "dca03bd91876951c49f1c971c83c9dd55404de60201b7b6435451cf7ddb4751c",
    "qa7_counting_test.txt": "a74d1f2b91329b2bae814d41cdac2fbdfdf0328562b7d8afa9a0fa576d461e27",
    "qa8_lists-sets_train.txt": "058604df6f9440458317e8ae685d2b7b84261e1a80b4d6410a9140d16f81bf06",
    "qa8_lists-sets_test.txt": "362a653c821a580fa315a85243b4f03bfa06fa7e0269b6f8e596f8fe6911646a",
    "qa9_simple-negation_train.txt": "0c3b89921af0caea1c4059ee3f7b7f2a88869f924195a428da37820446b8c49f",
    "qa9_simple-negation_test.txt": "63590aff3f89993db409f0e9a9eb39c2a5b9d5efff99b255d800a891b0044d9f",
    "qa10_indefinite-knowledge_train.txt": "0b7691689447bab05476c5b48c44999b41e747c3978df69c18fdd87b60d6e8b3",
    "qa10_indefinite-knowledge_test.txt": "fde8f20ed0b3ba979058ed391a566af34653f23baab5b2793ee37f87ef4e88b7",
    "qa11_basic-coreference_train.txt": "9468de9a1f256f43dfda693a5d07182d21149a82b65f7c2451c64e9cff5eb138",
    "qa11_basic-coreference_test.txt": "46f3290d0158ce1285a40cd2d793f5a65f86ae5000226e165cbc85a3dfeb2f6f",
    "qa12_conjunction_train.txt": "45c2764bb2d3c8f699d35e9d9aa7958fcd96379c6e907116cdf74526c108bb25",
    "qa12_conjunction_test.txt": "6437718f8f9801ce345869e910b896836cdc6fd2d01dc7b4d2df49730703b4b1",
    "qa13_compound-coreference_train.txt": "533a391edbda743e4c99504de88b40cdded5b1d5ef454d1390f0863f748a4cc9",
    "qa13_compound-coreference_test.txt": "76a25b684f23c9cc473d8cd1465506168b9a1ec8891cfc59d0bbd87e6a064990",
    "qa14_time-reasoning_train.txt": "b7561cbc624205c9c2fdbb8c843cfa8ad90edd65e78bb223fc6dea8113662df8",
    "qa14_time-reasoning_test.txt": "e3f0b19858ffbec3ed1e49076cc4d1295a89ce146c50318b862f13f202b3caf2",
    "qa15_basic-deduction_train.txt": "e856ebfdcce4dd7d617c1d10f985e96a0850c0ca18e9a19a017cb710d135ed3d",
    "qa15_basic-deduction_test.txt": "32b77e117fe9acf5f94906684e3b5206de0108e646c76e1da3e022896ec7ee94",
    "qa16_basic-induction_train.txt": "20121005137e3d4b061a086eb177a456303d5742b764eb8da2d0e480b6af4d28",
    "qa16_basic-induction_test.txt": "4a11e55366f2a5a859b5a81f683ee23801bdbe71ef984e51adb976bd053e8dcf",
    "qa17_positional-reasoning_train.txt": "20083bf56ff74f0e7cf5e3e2f8c3905cdb8ef09293c3e8cf7a96ed8b45ae2277",
    "qa17_positional-reasoning_test.txt": "9e1e0250ed4ec1831757fab26c04138f81ea557ebf6976a220db879cbed04bac",
    "qa18_size-reasoning_train.txt": "18b7dcf52c9a0e87e4e7dd3d65b7e5a630de039645f52a1294197af7481d739d",
    "qa18_size-reasoning_test.txt": "d34f70eb7228a276fcb3a7854174fe562c5634f4fb454a39fc3d1ad9934be3ef",
    "qa19_path-finding_train.txt": "dcb788352a56effb7bea1449128f31cc9c342c8c327b6df2caeee0e379e6ad3a",
    "qa19_path-finding_test.txt": "023e391f0d7f79c9e6ae1c46c093e2d0dbd50ab8fbd8965e037a75e3614c20e5",
    "qa20_agents-motivations_train.txt": "29580ad55fb7b4b29ba014696056cc68f8f347dac3be88470fd692ad60150398",
    "qa20_agents-motivations_test.txt": "bd3bde3788ac14ba0ae095078f7b820fbd2bfa6a34dba9d1d46a34afde9c2729",
}

PAD = "<pad>"


class BabiFormatError(DataFileError):
    """A bAbI file has a line that does not follow the format; the message names the file and line."""


@dataclass(frozen=True)
class QA:
    """One question with its story: sentences and question as lower-case tokens, supporting facts as indices
    into ``story`` (0 = the story's first sentence)."""

    story: tuple[tuple[str, ...], ...]
    question: tuple[str, ...]
    answer: str
    supporting: tuple[int, ...]


def tokenize(text: str) -> tuple[str, ...]:
    """Lower-case words, punctuation dropped: ``"Where is Mary?"`` → ``("where", "is", "mary")``."""
    return tuple(re.findall(r"[a-z0-9]+", text.lower()))


def parse_babi(lines: Iterable[str], source: str = "<string>") -> list[QA]:
    """Parse bAbI lines into `QA` items; a malformed line raises `BabiFormatError` with ``source:line``."""
    items: list[QA] = []
    story: list[tuple[str, ...]] = []
    sentence_of: dict[int, int] = {}  # line ID -> index into story (story lines only)
    previous = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n").rstrip("\r")
        if not line.strip():
            continue
        where = f"{source}, line {number}"
        head, _, rest = line.partition(" ")
        if not head.isdigit() or not rest.strip():
            raise BabiFormatError(f"{where}: expected 'ID text' with an integer ID, got {line!r}")
        line_id = int(head)
        if line_id == 1:
            story, sentence_of = [], {}
        elif line_id != previous + 1:
            raise BabiFormatError(f"{where}: expected ID 1 (new story) or {previous + 1}, got {line_id}")
        previous = line_id
        if "\t" not in rest:
            sentence_of[line_id] = len(story)
            story.append(tokenize(rest))
            continue
        fields = rest.split("\t")
        if len(fields) != 3 or not fields[1].strip():
            raise BabiFormatError(
                f"{where}: expected 'question<TAB>answer<TAB>supporting IDs', got {len(fields)} field(s) in {line!r}"
            )
        question, answer, support = fields
        try:
            ids = [int(s) for s in support.split()]
        except ValueError:
            raise BabiFormatError(f"{where}: supporting IDs must be integers, got {support!r}") from None
        missing = [i for i in ids if i not in sentence_of]
        if missing:
            raise BabiFormatError(f"{where}: supporting ID(s) {missing} are not earlier story lines of this story")
        items.append(QA(tuple(story), tokenize(question), answer.strip().lower(),
                        tuple(sentence_of[i] for i in ids)))
    return items


def read_babi(path: Path) -> list[QA]:
    """Parse one bAbI file (errors name the file by its name and the line number)."""
    with open(path, encoding="utf-8") as handle:
        return parse_babi(handle, source=Path(path).name)


def task_file(task: int, split: str) -> str:
    """File name of a 1k task: ``task_file(2, "train")`` → ``"qa2_two-supporting-facts_train.txt"``."""
    if task not in TASK_NAMES:
        raise ValueError(f"task: expected an integer in 1..20, got {task!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return f"qa{task}_{TASK_NAMES[task]}_{split}.txt"


def load_task(task: int, questions: int = 1000, seed: int = 0) -> tuple[list[QA], list[QA], str]:
    """Train and test questions of bAbI 1k task ``task`` and a line saying which data ran.

    Real files come from ``$ATTNBOOK_DATA/babi/en/`` (SHA-256 verified). Without them, tasks 1-3 are generated
    (``questions`` train and test questions, seeded); other tasks raise `FileNotFoundError`.
    """
    paths = [find_data(f"babi/en/{task_file(task, s)}", SHA256[task_file(task, s)]) for s in ("train", "test")]
    if all(p is not None for p in paths):
        train, test = (read_babi(p) for p in paths)
        return train, test, describe_source(f"bAbI 1k task {task}", paths[0], "")
    if task not in GENERATORS:
        raise FileNotFoundError(
            f"task: bAbI task {task} has no offline generator (only tasks {sorted(GENERATORS)}); set ATTNBOOK_DATA "
            f"to the directory holding babi/en/{task_file(task, 'train')}"
        )
    train = parse_babi(generate_task(task, questions, seed).splitlines(), f"generated task {task} (train)")
    test = parse_babi(generate_task(task, questions, seed + 1).splitlines(), f"generated task {task} (test)")
    fallback = f"bAbI-style task {task} from attnbook.data.babi.generate_task ({questions} questions per split)"
    return train, test, describe_source(f"bAbI 1k task {task}", None, fallback)



# ---------------------------------------------------------------------------------------------------------
# From tokens to tensors.


class Vocab:
    """Word ↔ index; index 0 is the padding word, which embeds to zero."""

    def __init__(self, items: Iterable[QA]):
        words = set()
        for qa in items:
            words.update(w for s in qa.story for w in s)
            words.update(qa.question)
            words.add(qa.answer)
        self.words = [PAD, *sorted(words)]
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Iterable[str]) -> list[int]:
        return [self.index[w] for w in words]


@dataclass
class Batch:
    """Tensors of a set of questions. Shape legend: N questions, M memory slots, J words per sentence.

    ``stories`` (N, M, J) word ids, slot 0 the most recent sentence (the paper's temporal order);
    ``memory_mask`` (N, M) True on real sentences; ``queries`` (N, J_q); ``answers`` (N,);
    ``supporting`` (N, M) True on the slots of the supporting facts.
    """

    stories: Tensor
    memory_mask: Tensor
    queries: Tensor
    answers: Tensor
    supporting: Tensor

    def __len__(self) -> int:
        return self.answers.shape[0]

    def __getitem__(self, index: Tensor | slice) -> "Batch":
        return Batch(self.stories[index], self.memory_mask[index], self.queries[index], self.answers[index],
                     self.supporting[index])


def vectorize(items: list[QA], vocab: Vocab, memory_size: int = 50, sentence_len: int | None = None,
              query_len: int | None = None) -> Batch:
    """Encode questions as a `Batch`, keeping the ``memory_size`` most recent sentences of each story."""
    sentence_len = sentence_len or max(len(s) for qa in items for s in qa.story)
    query_len = query_len or max(len(qa.question) for qa in items)
    n = len(items)
    stories = torch.zeros(n, memory_size, sentence_len, dtype=torch.long)
    queries = torch.zeros(n, query_len, dtype=torch.long)
    supporting = torch.zeros(n, memory_size, dtype=torch.bool)
    lengths = torch.zeros(n, dtype=torch.long)
    for i, qa in enumerate(items):
        recent = list(reversed(qa.story))[:memory_size]  # slot 0 = latest sentence
        lengths[i] = len(recent)
        for slot, sentence in enumerate(recent):
            ids = vocab.encode(sentence)[:sentence_len]
            stories[i, slot, : len(ids)] = torch.tensor(ids)
        for s in qa.supporting:
            slot = len(qa.story) - 1 - s
            if slot < memory_size:
                supporting[i, slot] = True
        q = vocab.encode(qa.question)[:query_len]
        queries[i, : len(q)] = torch.tensor(q)
    answers = torch.tensor([vocab.index[qa.answer] for qa in items])
    memory_mask = torch.arange(memory_size) < lengths[:, None]
    return Batch(stories, memory_mask, queries, answers, supporting)


@dataclass
class TaskData:
    """One task ready for training: the paper's 10% validation split of the training questions, the test
    questions (``test_items`` keeps their text), the shared vocabulary and the line saying which data ran."""

    task: int
    train: Batch
    val: Batch
    test: Batch
    test_items: list[QA]
    vocab: Vocab
    source: str


def prepare_task(task: int, memory_size: int = 50, val_fraction: float = 0.1, questions: int = 1000,
                 generator: torch.Generator | None = None) -> TaskData:
    """Load task ``task`` (`load_task`), build one vocabulary over train and test, vectorise, and hold out
    ``val_fraction`` of the training questions at random. Memory has ``min(memory_size, longest story)``
    slots, so short tasks do not pay for empty ones."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a fraction in (0, 1), got {val_fraction}")
    train_items, test_items, source = load_task(task, questions)
    both = train_items + test_items
    vocab = Vocab(both)
    sizes = dict(memory_size=min(memory_size, max(len(qa.story) for qa in both)),
                 sentence_len=max(len(s) for qa in both for s in qa.story),
                 query_len=max(len(qa.question) for qa in both))
    full = vectorize(train_items, vocab, **sizes)
    order = torch.randperm(len(full), generator=generator)
    n_val = max(1, round(val_fraction * len(full)))
    return TaskData(task, full[order[n_val:]], full[order[:n_val]], vectorize(test_items, vocab, **sizes),
                    test_items, vocab, source)
