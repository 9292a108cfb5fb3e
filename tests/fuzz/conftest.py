"""Hypothesis profiles: a quick one for `make test`, 10,000 examples per parser for `make fuzz`
(VISIONKIT_FUZZ_EXAMPLES changes that count)."""

import os

from hypothesis import settings

settings.register_profile("quick", max_examples=40, deadline=None)
settings.register_profile("fuzz", max_examples=int(os.environ.get("VISIONKIT_FUZZ_EXAMPLES", "10000")), deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
