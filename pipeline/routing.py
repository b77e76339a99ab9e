"""Routing rules: which received studies are analysed at all.

A node on a hospital network receives head CTs, MR and ultrasound too. The rules (settings
``routing_*``, passed in by the composition root) decide from the study's headers and the
sending AE whether to analyse it; a study that is not analysed is still stored and audited,
and is answered with a NOT_ANALYZABLE report only when ``answer_not_analysed`` is on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class RoutingRules:
    """What makes a study eligible for analysis.

    Attributes:
        modalities: at least one series must have one of these modalities.
        body_part_patterns / description_patterns: case-insensitive regular expressions; a
            study is a chest study when BodyPartExamined matches a body-part pattern or a study
            or series description matches a description pattern.
        accept_unlabelled: analyse studies that carry neither a body part nor a description
            (common after anonymisation).
        calling_aes: only studies sent by these AEs are analysed; empty means any sender.
        answer_not_analysed: send a NOT_ANALYZABLE report for studies the rules exclude.
    """

    modalities: tuple[str, ...] = ("CT",)
    body_part_patterns: tuple[str, ...] = ("chest", "thorax", "lung")
    description_patterns: tuple[str, ...] = ("chest", "thora", "lung", "pulmo")
    accept_unlabelled: bool = True
    calling_aes: tuple[str, ...] = ()
    answer_not_analysed: bool = False

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError('Argument "modalities" must name at least one modality.')
        for name in ("body_part_patterns", "description_patterns"):
            for pattern in getattr(self, name):
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ValueError(
                        f'Argument "{name}" holds an invalid pattern {pattern!r}: {e}'
                    ) from None


@dataclass(frozen=True)
class StudyHeaders:
    """The attributes of a study that routing looks at, gathered over its instances."""

    modalities: frozenset[str]
    body_parts: frozenset[str]
    descriptions: frozenset[str]
    calling_ae: str


@dataclass(frozen=True)
class RoutingDecision:
    """Whether to analyse, the reason (audit log), and whether to answer a refusal."""

    analyse: bool
    reason: str
    answer: bool


def route_study(study: StudyHeaders, rules: RoutingRules) -> RoutingDecision:
    """Apply ``rules`` to ``study``."""
    if rules.calling_aes and study.calling_ae.strip() not in rules.calling_aes:
        return _refuse(f"calling AE {study.calling_ae!r} is not routed to analysis", rules)
    if not study.modalities & set(rules.modalities):
        found = ", ".join(sorted(study.modalities)) or "none"
        return _refuse(f"modalities {found}; analysis needs {', '.join(rules.modalities)}", rules)
    body = _first_match(study.body_parts, rules.body_part_patterns)
    described = _first_match(study.descriptions, rules.description_patterns)
    if body is not None:
        return RoutingDecision(True, f"chest study (body part {body!r})", False)
    if described is not None:
        return RoutingDecision(True, f"chest study (description {described!r})", False)
    labels = {v for v in study.body_parts | study.descriptions if v.strip()}
    if not labels and rules.accept_unlabelled:
        reason = "no body part or description; unlabelled studies accepted"
        return RoutingDecision(True, reason, False)
    shown = ", ".join(sorted(labels)) or "none"
    return _refuse(f"not a chest study (body part / descriptions: {shown})", rules)


def _refuse(reason: str, rules: RoutingRules) -> RoutingDecision:
    return RoutingDecision(False, reason, rules.answer_not_analysed)


def _first_match(values: Iterable[str], patterns: Iterable[str]) -> str | None:
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    for value in sorted(values):
        if any(c.search(value) for c in compiled):
            return value
    return None
