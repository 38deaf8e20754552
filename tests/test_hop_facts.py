"""Chapter 1's per-hop analysis: the roles of task 2's supporting facts and the attention each hop puts there."""

import pytest
import torch

from attnbook.data.babi import parse_babi
from attnbook.errors import ShapeError
from attnbook.hop_facts import fact_roles, hop_hits, hop_mass

STORY = """1 Mary moved to the kitchen.
2 Mary got the apple there.
3 John went to the hallway.
4 Mary travelled to the garden.
5 Where is the apple?\tgarden\t2 4
"""


def test_fact_roles_mark_the_object_and_the_person_in_memory_order():
    items = parse_babi(STORY.splitlines())
    objects, others = fact_roles(items, memory_size=5)
    # slot 0 is the latest sentence: "Mary travelled to the garden" (slot 0), "Mary got the apple" (slot 2)
    assert objects[0].nonzero().flatten().tolist() == [2]
    assert others[0].nonzero().flatten().tolist() == [0]
    objects, others = fact_roles(items, memory_size=2)  # the object fact falls out of a 2-slot memory
    assert not objects.any() and others[0, 0]


def test_hop_mass_and_hits():
    weights = torch.tensor([[[0.1, 0.0, 0.9], [0.8, 0.1, 0.1]], [[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]])  # (2, 2, 3)
    slots = torch.tensor([[False, False, True], [False, True, False]])
    torch.testing.assert_close(hop_mass(weights, slots), torch.tensor([0.8, 0.2]))
    torch.testing.assert_close(hop_hits(weights, slots), torch.tensor([1.0, 0.0]))
    with pytest.raises(ShapeError, match="slots"):
        hop_mass(weights, slots[:, :2])
    with pytest.raises(ShapeError, match="weights"):
        hop_hits(weights[0], slots)


def test_attention_on_facts_checks_its_masks():
    from attnbook.memory import attention_on_facts

    weights = torch.full((2, 3, 4), 0.25)
    with pytest.raises(ShapeError, match="supporting"):
        attention_on_facts(weights, torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ShapeError, match="memory_mask"):
        attention_on_facts(weights, torch.ones(2, 4, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool))
