import math

import pytest
import torch
import torch.nn.functional as F

from digitlab.loss import BinaryCrossEntropy, CrossEntropy, MnistLoss, mnist_loss
from digitlab.optimizer import BasicOptim


def test_mnist_loss_is_the_chapters_definition():
    # The chapter's worked example: targets [1, 0, 1], sigmoid outputs [0.9, 0.4, 0.2] -> where(...) = [0.1, 0.4, 0.8].
    targets = torch.tensor([1, 0, 1])
    probabilities = torch.tensor([0.9, 0.4, 0.2])
    logits = torch.logit(probabilities)
    assert mnist_loss(logits, targets).item() == pytest.approx((0.1 + 0.4 + 0.8) / 3, abs=1e-6)
    assert MnistLoss()(logits, targets).item() == pytest.approx(0.4333333, abs=1e-6)


def test_mnist_loss_rewards_confident_right_answers():
    targets = torch.tensor([1, 0])
    assert mnist_loss(torch.tensor([10.0, -10.0]), targets) < 1e-4
    assert mnist_loss(torch.tensor([-10.0, 10.0]), targets) > 0.9999
    assert mnist_loss(torch.zeros(2), targets).item() == pytest.approx(0.5)


def test_bce_and_cross_entropy_match_torch():
    logits, targets = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1, 0, 0])
    assert BinaryCrossEntropy()(logits, targets) == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, targets.float()).item()
    )
    scores = torch.tensor([[2.0, 0.1, -1.0], [0.0, 0.0, 3.0]])
    assert CrossEntropy()(scores, torch.tensor([0, 2])).item() == pytest.approx(
        F.cross_entropy(scores, torch.tensor([0, 2])).item()
    )
    assert MnistLoss.binary and BinaryCrossEntropy.binary and not CrossEntropy.binary


def test_basic_optim_steps_against_the_gradient():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = BasicOptim([p], lr=0.5)
    (p**2).sum().backward()  # grad = 2p
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match="lr=0"):
        BasicOptim([p], lr=0)
    assert math.isclose(opt.param_groups[0]["lr"], 0.5)


@pytest.mark.parametrize(
    ("loss", "classes"),
    [
        (MnistLoss(), 0),
        (BinaryCrossEntropy(), 0),
        (CrossEntropy(), 10),
        (CrossEntropy(label_smoothing=0.1), 10),
        (CrossEntropy(weight=torch.rand(10) + 0.5), 10),
    ],
    ids=["mnist_loss", "bce", "cross_entropy", "label_smoothing", "class_weights"],
)
@pytest.mark.parametrize("shared", [True, False], ids=["shared_batch", "own_batches"])
def test_a_stacks_losses_are_each_trials_own(loss, classes, shared):
    """`per_trial` (K stacked trials' losses in one op) gives each trial's single loss, to round-off, for K
    trials on one shared batch (validation) or on a batch each (training), and its gradient too."""
    torch.manual_seed(0)
    k, b = 5, 33
    logits = torch.randn(k, b, classes) * 3 if classes else torch.randn(k, b) * 3
    logits.requires_grad_()
    targets = torch.randint(0, classes or 2, (b,) if shared else (k, b))
    stacked = loss.per_trial(logits, targets)
    alone = torch.stack([loss(logits[t], targets if shared else targets[t]) for t in range(k)])
    assert stacked.shape == (k,)
    assert torch.allclose(stacked, alone, rtol=1e-6, atol=1e-7)
    (grad,) = torch.autograd.grad(stacked.sum(), logits)
    (own,) = torch.autograd.grad(alone.sum(), logits)
    assert torch.allclose(grad, own, rtol=1e-5, atol=1e-8)
