"""The error a licensed feature answers in open-source mode."""

from __future__ import annotations

from huddle.core.errors import Forbidden


class LicenseRequired(Forbidden):
    """403 ``license_required``: the feature needs a license that is not in force."""

    code, message = "license_required", "This feature needs a Huddle license"

    def __init__(self, feature: str, reason: str) -> None:
        super().__init__(
            f"The {feature} feature needs a Huddle license: {reason}",
            details={"feature": feature, "reason": reason},
        )
