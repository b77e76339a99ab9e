"""Routing rules decide from headers and the sender whether a study is analysed."""

from __future__ import annotations

import pytest

from lungpath.settings import Settings
from pipeline.routing import RoutingRules, StudyHeaders, route_study


def _study(modalities=("CT",), body=(), descriptions=(), ae="SCANNER1") -> StudyHeaders:
    return StudyHeaders(frozenset(modalities), frozenset(body), frozenset(descriptions), ae)


@pytest.mark.parametrize(
    ("study", "analyse", "reason"),
    [
        (_study(body=("CHEST",)), True, "body part 'CHEST'"),
        (_study(descriptions=("CT Thorax w/o contrast",)), True, "description"),
        (_study(body=("HEAD",), descriptions=("Brain",)), False, "not a chest study"),
        (_study(modalities=("MR",), body=("CHEST",)), False, "modalities MR"),
        (_study(modalities=("CT", "SR")), True, "unlabelled studies accepted"),
    ],
)
def test_default_rules(study: StudyHeaders, analyse: bool, reason: str) -> None:
    decision = route_study(study, RoutingRules())
    assert decision.analyse is analyse
    assert reason in decision.reason
    assert decision.answer is False


def test_calling_ae_filter_and_answer() -> None:
    rules = RoutingRules(calling_aes=("CT_LUNG",), answer_not_analysed=True,
                         accept_unlabelled=False)
    refused = route_study(_study(body=("CHEST",), ae="CT_HEAD"), rules)
    assert not refused.analyse and refused.answer and "CT_HEAD" in refused.reason
    assert route_study(_study(body=("CHEST",), ae="CT_LUNG"), rules).analyse
    unlabelled = route_study(_study(ae="CT_LUNG"), rules)
    assert not unlabelled.analyse and "none" in unlabelled.reason


def test_rules_validate_their_patterns() -> None:
    with pytest.raises(ValueError, match='"body_part_patterns"'):
        RoutingRules(body_part_patterns=("(",))
    with pytest.raises(ValueError, match='"modalities"'):
        RoutingRules(modalities=())


def test_settings_carry_the_rules(clean_env) -> None:
    settings = Settings(routing_calling_aes=["CT_LUNG"], routing_descriptions=["^thx"],
                        answer_not_analysed=True)
    rules = settings.routing_rules
    assert rules.calling_aes == ("CT_LUNG",) and rules.answer_not_analysed
    assert route_study(_study(descriptions=("THX routine",), ae="CT_LUNG"), rules).analyse
    with pytest.raises(ValueError, match="invalid regular expression"):
        Settings(routing_body_parts=["[a"])
