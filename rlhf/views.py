"""Research pages of the learning side (researchers only)."""
from __future__ import annotations

import io

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from annotations.roles import researcher_required
from rlhf.models import RewardModelVersion


@researcher_required
def reward_model_loss_plot(request: HttpRequest, pk: int) -> HttpResponse:
    """PNG of the train and validation loss per epoch of every ensemble member of one version."""
    version = get_object_or_404(RewardModelVersion, pk=pk)
    # Agg: no display on servers; imported here so pages that never plot don't pay for matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    for k, curve in enumerate(version.metrics.get("curves", [])):
        epochs = range(1, len(curve["train_loss"]) + 1)
        line, = ax.plot(epochs, curve["train_loss"], label=f"member {k + 1} train")
        ax.plot(epochs, curve["val_loss"], linestyle="--", color=line.get_color(), label=f"member {k + 1} validation")
        if curve["best_epoch"] >= 0:
            ax.axvline(curve["best_epoch"] + 1, color=line.get_color(), alpha=0.3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("Bradley-Terry loss")
    ax.set_title(f"{version.label}: loss per epoch (vertical line: kept epoch)")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return HttpResponse(buf.getvalue(), content_type="image/png")
