"""The transformers callback against a real Trainer on a tiny config-built model (no downloads)."""
import json
import sys

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
import torch  # noqa: E402

import lraudit.integrations.transformers as hf_integration  # noqa: E402
from lraudit import LRAuditError  # noqa: E402
from lraudit.integrations.transformers import LRAuditCallback  # noqa: E402


class Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, 50, (8,), generator=g), "labels": torch.tensor(i % 2)}


def tiny_bert():
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_recorded_lr_equals_log_history(accumulate, tmp_path, capsys):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=accumulate,
        num_train_epochs=2, learning_rate=1e-3, lr_scheduler_type="linear", warmup_steps=3, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
    )
    cb = LRAuditCallback(out=tmp_path / "lr.json")
    trainer = transformers.Trainer(model=tiny_bert(), args=args, train_dataset=Pairs(), callbacks=[cb])
    trainer.train()

    lrs = cb.run.lrs()
    steps = trainer.state.global_step
    assert steps == 2 * 8 // accumulate and len(lrs) == steps
    logged = [(e["step"], e["learning_rate"]) for e in trainer.state.log_history if "learning_rate" in e]
    assert [s for s, _ in logged] == list(range(1, steps + 1))
    # transformers reads the LR it logs at global step k after optimizer.step() and before
    # lr_scheduler.step() (Trainer._inner_training_loop: "get leaning rate before update"): the LR of
    # update k, which is lrs[k - 1]. The schedule moves at every step, so an off-by-one cannot pass.
    assert [v for _, v in logged] == [lrs[k - 1] for k, _ in logged]
    assert len(set(lrs)) == steps
    assert lrs[:4] == pytest.approx([0.0, 1e-3 / 3, 2e-3 / 3, 1e-3], rel=1e-12)  # linear warm-up over 3 steps
    assert cb.run.findings == []
    [(name, cls, group, _)] = cb.run.series()[:1]
    assert (name, cls) == ("lr-AdamW", "AdamW")  # the torch optimizer, not accelerate's wrapper
    saved = json.loads((tmp_path / "lr.json").read_text())
    assert saved["optimizers"][0]["steps"] == steps
    assert "lr-AdamW (AdamW, %d optimizer steps)" % steps in capsys.readouterr().out


def test_context_manager_stops_the_audit_when_train_raises(tmp_path):
    class Boom(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise RuntimeError("boom")

    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
                                          max_steps=5, save_strategy="no", report_to=[], use_cpu=True,
                                          disable_tqdm=True)
    cb = LRAuditCallback(report=False)
    trainer = transformers.Trainer(model=tiny_bert(), args=args, train_dataset=Pairs(), callbacks=[cb, Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        with cb:
            trainer.train()
    assert cb.run.steps() == 2
    opt = trainer.optimizer.optimizer
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.setattr(hf_integration, "_CLASS", None)
    with pytest.raises(ImportError, match=r"pip install 'torch-lraudit\[transformers\]'"):
        hf_integration.LRAuditCallback


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=8, learning_rate=1e-3,
                lr_scheduler_type="linear", warmup_steps=2, logging_steps=1, report_to=[], use_cpu=True,
                disable_tqdm=True, save_strategy="steps", save_steps=4)
    base.update(kw)
    return transformers.TrainingArguments(**base)


@pytest.mark.parametrize("mode", ["scheduler", "scheduler-per-step"])
def test_resume_from_checkpoint_is_silent_under_expect_scheduler(mode, tmp_path):
    first = transformers.Trainer(model=tiny_bert(), args=_args(tmp_path), train_dataset=Pairs())
    first.train()
    cb = LRAuditCallback(expect=mode, report=False)
    trainer = transformers.Trainer(model=tiny_bert(), args=_args(tmp_path), train_dataset=Pairs(), callbacks=[cb])
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    lrs = cb.run.lrs()
    logged = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    assert sorted(logged) == list(range(1, 9)) and len(lrs) == 4  # the history of steps 1-4 is restored
    assert [logged[k] for k in (5, 6, 7, 8)] == lrs  # transformers' own record of the resumed steps
    assert lrs == pytest.approx([1e-3 * (8 - k) / 6 for k in (4, 5, 6, 7)], rel=1e-12)  # linear decay
    assert cb.run.findings == []  # before: an off-by-one LR015 at every step of the resumed run


def test_findings_reach_on_finding_while_training(tmp_path):
    class WriteLR(transformers.TrainerCallback):  # a manual LR write on top of the Trainer's scheduler
        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            if state.global_step == 2:
                for group in optimizer.param_groups:
                    group["lr"] = 0.5

    got = []
    seen_at = []
    cb = LRAuditCallback(report=False, on_finding=lambda f: (got.append(f.rule), seen_at.append(trainer.state.global_step)))
    trainer = transformers.Trainer(model=tiny_bert(), args=_args(tmp_path, save_strategy="no"), train_dataset=Pairs(),
                                   callbacks=[WriteLR(), cb])
    trainer.train()
    assert got == ["LR002"] and seen_at[0] < 8  # found during training, not at its end
    assert [f.rule for f in cb.run.findings] == ["LR002"]


def test_strict_immediate_stops_training_at_the_first_finding(tmp_path):
    class WriteLR(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            if state.global_step == 2:
                optimizer.param_groups[0]["lr"] = float("nan")

    cb = LRAuditCallback(report=False, strict="immediate")
    trainer = transformers.Trainer(model=tiny_bert(), args=_args(tmp_path, save_strategy="no"), train_dataset=Pairs(),
                                   callbacks=[WriteLR(), cb])
    with pytest.raises(LRAuditError):
        with cb:
            trainer.train()
    assert trainer.state.global_step == 2  # the update that would have used the NaN never ran
