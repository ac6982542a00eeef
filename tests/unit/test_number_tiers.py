import pytest

from centrex.core.number_tiers import (
    EXAMPLE_RULES,
    Tier,
    TierRuleError,
    check_pattern,
    classify_tier,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("national", "tier"),
    [
        ("0142347777", Tier.gold),
        ("0142121212", Tier.gold),
        ("0142345777", Tier.silver),
        ("0142341234", Tier.silver),
        ("0142345678", Tier.silver),
        ("0142345179", None),
    ],
)
def test_example_rules(national, tier):
    rule = classify_tier(national, EXAMPLE_RULES)
    assert (rule.tier if rule else None) == tier


@pytest.mark.parametrize("pattern", ["(", "a*", ""])
def test_unusable_patterns_are_refused(pattern):
    with pytest.raises(TierRuleError):
        check_pattern(pattern)
