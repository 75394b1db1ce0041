"""The settings one model version is built and served with, recorded in ml.model_builds.

A refresh records them with each version (services/tuning.py chooses the tunable ones); the
service serves each version with its own, except those the environment gives explicitly,
which a refresh does not tune either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from services.scoring import Weights

# The settings a refresh may tune, by the environment variables that fix them.
TUNABLE = {
    "ease_lambda": ("EASE_LAMBDA",),
    "neighbours_k": ("NEIGHBOURS_K",),
    "blend": ("CONTENT_WEIGHT", "COLLABORATIVE_WEIGHT"),
    "history_weighting": ("HISTORY_WEIGHTING",),
}


@dataclass(frozen=True)
class ModelSettings:
    ease_lambda: float
    neighbours_k: int
    content_weight: float
    collaborative_weight: float
    history_weighting: str
    tuned: tuple[str, ...] = ()  # which of TUNABLE the refresh searched

    @classmethod
    def configured(cls, settings) -> "ModelSettings":
        """The environment's (a settings.Settings)."""
        return cls(settings.ease_lambda, settings.neighbours_k, settings.content_weight,
                   settings.collaborative_weight, settings.history_weighting)

    @classmethod
    def of(cls, record: dict) -> "ModelSettings":
        """From a recorded `as_dict()`."""
        return cls(float(record["ease_lambda"]), int(record["neighbours_k"]), float(record["content_weight"]),
                   float(record["collaborative_weight"]), str(record["history_weighting"]),
                   tuple(record.get("tuned", ())))

    def as_dict(self) -> dict:
        return {**asdict(self), "tuned": list(self.tuned)}

    def weights(self, dislike: float) -> Weights:
        return Weights(self.content_weight, self.collaborative_weight, dislike)

    def same_model(self, other: "ModelSettings") -> bool:
        """Whether both rank alike (what was tuned aside)."""
        return replace(self, tuned=()) == replace(other, tuned=())


def given(explicit: frozenset[str]) -> frozenset[str]:
    """Which of TUNABLE the environment fixes, from Settings.explicit (the field names it gives)."""
    return frozenset(name for name, variables in TUNABLE.items() if any(v.lower() in explicit for v in variables))


def served(recorded: dict | None, configured: ModelSettings, fixed: frozenset[str]) -> ModelSettings:
    """What a version is served with: the settings recorded with it (`recorded`; none for versions
    built before they were, then `configured`), with the blend and the history weighting of
    `configured` where `fixed` (of given()) says the environment gives them."""
    if not recorded:
        return configured
    settings = ModelSettings.of(recorded)
    if "blend" in fixed:
        settings = replace(settings, content_weight=configured.content_weight,
                           collaborative_weight=configured.collaborative_weight)
    if "history_weighting" in fixed:
        settings = replace(settings, history_weighting=configured.history_weighting)
    return settings
