"""Interpretability, tested (chapter 8): what attention shows, and the evidence to check it against.

`rollout` follows attention through the layers (rollout, flow); `gradients` attributes an output to the inputs
(gradient × input, integrated gradients); `heads` measures what single heads attend to and how well they track
syntax; `erasure` measures faithfulness by removing tokens; `intervene` edits attention inside a model and
compares distributions. Every name below is importable from ``attnbook.interpret``.
"""

from attnbook.interpret.erasure import erasure_curve, random_scores, top_k_keep
from attnbook.interpret.gradients import (RULES, embedding_forward, gradient_x_input,
                                          integrated_gradients, quadrature, select_target)
from attnbook.interpret.headview import head_frame, head_view
from attnbook.interpret.heads import (arc_accuracy, attention_share, best_head, best_offset, offset_accuracy,
                                      offset_keys,
                                      same_word_keys, word_attention)
from attnbook.interpret.intervene import (edit_attention, js_divergence, permute_rows, total_variation,
                                          uniform_rows)
from attnbook.interpret.rollout import (HEAD_FUSIONS, attention_flow, attention_rollout, check_attentions,
                                        fuse_heads, residual_attention)

__all__ = [
    "HEAD_FUSIONS", "RULES", "arc_accuracy", "attention_flow", "best_head", "best_offset", "attention_rollout", "attention_share", "check_attentions",
    "edit_attention", "embedding_forward", "erasure_curve", "fuse_heads", "quadrature", "gradient_x_input", "head_frame", "head_view",
    "integrated_gradients", "js_divergence", "offset_accuracy", "offset_keys", "permute_rows", "random_scores",
    "residual_attention", "same_word_keys", "select_target", "top_k_keep", "total_variation", "uniform_rows",
    "word_attention",
]
