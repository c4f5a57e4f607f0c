"""CUDA only: no device synchronisation, tensor LRs read at the end, fused AMP skips. Skipped without CUDA."""
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as L

from lraudit.runtime import audit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 1)).cuda()


def _batch():
    return torch.randn(8, 16, device="cuda")


def test_tensor_lr_on_device_no_sync_and_values_at_the_end():
    m = _model()
    lr = torch.tensor(0.01, device="cuda")
    opt = torch.optim.Adam(m.parameters(), lr=lr, fused=True)
    x = _batch()
    torch.cuda.synchronize()
    a = audit(opt)
    run = a.start()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(2100):  # more than one device chunk
            lr.fill_(0.01 / (1 + i % 5))
            opt.zero_grad(set_to_none=True)
            m(x).pow(2).mean().backward()
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    run = a.stop()
    assert run.steps() == 2100
    assert run.lrs() == pytest.approx([0.01 / (1 + i % 5) for i in range(2100)], rel=1e-6)
    assert run.findings == []


def test_tensor_lr_manual_write_with_scheduler_is_found_on_device():
    m = _model()
    opt = torch.optim.AdamW(m.parameters(), lr=torch.tensor(0.01, device="cuda"), fused=True)
    sched = L.StepLR(opt, 2, 0.5)
    x = _batch()
    with audit(opt) as run:
        for i in range(6):
            if i == 3:
                opt.param_groups[0]["lr"].fill_(0.5)
            opt.zero_grad(set_to_none=True)
            m(x).pow(2).mean().backward()
            opt.step()
            sched.step()
    assert [f.rule for f in run.findings] == ["LR002"]
    assert run.findings[0].step == 3


@pytest.mark.parametrize("fused", [False, True])
def test_cuda_gradscaler_skipped_first_step(fused):
    m = _model()
    opt = torch.optim.Adam(m.parameters(), lr=0.1, fused=fused)
    sched = L.StepLR(opt, 1, 0.5)
    scaler = torch.amp.GradScaler("cuda")
    x = _batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with audit(opt) as run:
            for i in range(4):
                opt.zero_grad(set_to_none=True)
                loss = m(x).pow(2).mean() * (float("inf") if i == 0 else 1.0)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
    assert [f.rule for f in run.findings] == ["LR013"]
    assert run.steps() == 3


def test_identical_weights_on_cuda():
    def train():
        m = _model()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True)
        sched = L.OneCycleLR(opt, max_lr=1e-2, total_steps=20)
        x = _batch()
        for _ in range(20):
            opt.zero_grad(set_to_none=True)
            m(x).pow(2).mean().backward()
            opt.step()
            sched.step()
        return [p.detach().clone() for p in m.parameters()]

    plain = train()
    a = audit(strict=True)  # every optimizer, built inside
    run = a.start()
    audited = train()
    a.stop()
    assert run.steps() == 20
    assert all(torch.equal(p, q) for p, q in zip(plain, audited))
