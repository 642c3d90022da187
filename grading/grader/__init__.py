"""How to judge, without I/O: facts -> checks -> findings -> evidence -> verdict, against baselines.

Each playbook question is a check (:mod:`grading.grader.checks`) over one connector's facts
(:mod:`grading.grader.facts`); :mod:`grading.grader.verdict` weighs the findings into a verdict and
:mod:`grading.grader.evidence` adds what an analyst would note. Nothing here reads telemetry or
storage: the sweep hands the facts in, so every decision can be tested on plain data.
"""

from grading.grader.evidence import incident_key
from grading.grader.facts import ConnectorFacts, Finding
from grading.grader.verdict import grade

__all__ = ["ConnectorFacts", "Finding", "grade", "incident_key"]
