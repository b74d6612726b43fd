"""The set-up hooks a method overrides instead of the base's internals."""

import torch
from toys import ToyRotation

IMAGES = torch.randint(
    0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
)


class ToyFitStart(ToyRotation):
    """Records what ``_on_fit_start`` sees."""

    def _on_fit_start(self, batch_size, *, epochs, lr, optimizer, weight_decay):
        self.seen = dict(
            batch_size=batch_size,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batches=len(self.loader),
            steps=self.total_steps,
            optimizer_state=len(self.optimizer.state),
        )


def test_fit_start_runs_after_the_optimizer_and_before_a_resume_restores_it(tmp_path):
    name = str(tmp_path / "run")
    sup = ToyFitStart(IMAGES, seed=0)
    sup.supervise(
        epochs=1, batch_size=4, lr=0.5, weight_decay=0.25, name=name, progress=False, device="cpu"
    )
    assert sup.seen == dict(
        batch_size=4, epochs=1, lr=0.5, weight_decay=0.25, batches=2, steps=2, optimizer_state=0
    )
    again = ToyFitStart(IMAGES, seed=0)
    again.supervise(
        epochs=2,
        batch_size=4,
        lr=0.5,
        weight_decay=0.25,
        name=name,
        progress=False,
        device="cpu",
        resume=True,
    )
    assert again.seen["optimizer_state"] == 0 and again.seen["steps"] == 4
    assert len(again.optimizer.state) > 0  # restored after the hook
