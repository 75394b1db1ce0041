"""The running A/B experiment: GET /api/experiments."""

from __future__ import annotations

from flask import current_app

from ml_service.api.blueprint import Blueprint
from ml_service.schemas import ExperimentsSchema

blp = Blueprint("experiments", __name__, url_prefix="/api", description="A/B experiments.")
EXPERIMENT_HEADER = "X-Experiment"


@blp.route("/experiments")
@blp.response(200, ExperimentsSchema, description="The running experiment, if any.")
def running_experiments():
    """The experiment the answering worker serves (at most one runs): its variants, their shares
    and overrides. Empty when none runs; a new one reaches every worker within MODEL_RELOAD_INTERVAL."""
    experiment = current_app.extensions["ml_service"].models.experiment
    if experiment is None:
        return {"experiments": []}
    return {"experiments": [{
        "name": experiment.name,
        "started_at": experiment.started_at,
        "variants": [{"name": v.name, "share": v.share, "overrides": v.overrides} for v in experiment.variants],
    }]}


def tagged(response, experiment):
    """X-Experiment: NAME/VARIANT of a single answer's experiment (absent outside one)."""
    if experiment is not None:
        response.headers[EXPERIMENT_HEADER] = f"{experiment.name}/{experiment.variant}"
    return response
