"""HAAQI-Net's hidden-state distillation: Linear projections of student layers regress the teacher's layers."""

from __future__ import annotations

import copy

import pytest
import torch

from aqa.config import compose
from aqa.tasks import build_module

HIDDEN = "distill.hidden={student_layers: [1, 2], teacher_layers: [1, 2], weight: 0.5}"


def batch(rng: torch.Generator) -> dict:
    return {"wav": torch.randn(2, 16000, generator=rng) * 0.1, "lengths": torch.tensor([16000, 9000]),
            "labels": {"haaqi": torch.rand(2, generator=rng)}, "group": torch.tensor([0, 1]),
            "is_reference": torch.tensor([False, False]),
            "conditions": {"audiogram": torch.rand(2, 8, generator=rng) * 60}}


def test_hidden_distillation_is_zero_for_an_identical_teacher_and_trains_the_projections(rng):
    cfg = compose("haaqi_net_tiny", [HIDDEN])
    student = build_module(cfg, with_teacher=False)
    assert len(student.distill_proj) == 2 and student.hidden_pairs == [(1, 1), (2, 2)]
    student._teacher = [copy.deepcopy(student.model).eval()]
    with torch.no_grad():
        for proj in student.distill_proj:  # identity projections: the student's layers are the teacher's
            proj.weight.copy_(torch.eye(proj.weight.shape[0]))
            proj.bias.zero_()
    b = batch(rng)
    student.eval()
    encoded, _ = student.model.encode_and_score(b["wav"], b["lengths"], b["conditions"])
    teacher_encoded, _ = student._teacher_outputs(b)
    assert float(student._distill_hidden(encoded, teacher_encoded)) == pytest.approx(0.0, abs=1e-10)

    with torch.no_grad():
        student.distill_proj[0].weight.mul_(2.0)  # a student that does not match pays, and learns
    student.train()
    total, _ = student._shared_step(b, "val")
    total.backward()
    assert student.distill_proj[0].weight.grad is not None and student.distill_proj[0].weight.grad.abs().sum() > 0


def test_hidden_projections_are_saved_with_the_student_and_rebuilt_without_a_teacher(tmp_path):
    cfg = compose("haaqi_net_tiny", [HIDDEN])
    module = build_module(cfg, with_teacher=False)
    keys = [k for k in module.state_dict() if k.startswith("distill_proj.")]
    assert keys == ["distill_proj.0.weight", "distill_proj.0.bias", "distill_proj.1.weight", "distill_proj.1.bias"]
    again = build_module(cfg, with_teacher=False)
    again.load_state_dict(module.state_dict())  # strict: the same modules without any teacher at hand
    with pytest.raises(ValueError, match="student layer 9"):
        build_module(compose("haaqi_net_tiny", ["distill.hidden={student_layers: [9], teacher_layers: [1]}"]),
                     with_teacher=False)
