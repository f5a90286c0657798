"""The doors for extensions: every registered name resolves, the settings and the command line take their choices
from the registries, and a user's own sampler is one registration away."""

import pytest
from optuna.samplers import RandomSampler

from densecell.config import ModelConfig, ProxySettings, StudySettings
from densecell.core.errors import ConfigError
from densecell.core.registry import REGISTRIES, SAMPLERS
from densecell.search import make_pruner, make_sampler


@pytest.mark.parametrize("registry", list(REGISTRIES.values()), ids=lambda r: r.kind)
def test_every_registered_name_resolves_and_says_what_it_is(registry):
    for name in registry:
        registry[name]  # its module imports and has the attribute (a typo in a reference fails here)
        assert registry.describe(name), name


def test_the_settings_take_their_choices_from_the_registries(monkeypatch):
    choices = r"\(one of random, vizier, evolution, local-search, predictor, tpe, nsga2\)"
    with pytest.raises(ConfigError, match=r"unknown sampler 'bayes' " + choices):
        StudySettings(cache_dir="x", sampler="bayes")
    with pytest.raises(ConfigError, match=r"unknown head 'psp' \(one of dpc, aspp\)"):
        ModelConfig(head="psp")
    monkeypatch.setitem(SAMPLERS, "mine", lambda space, seed: RandomSampler(seed + 7))
    settings = StudySettings(cache_dir="x", sampler="mine")  # one entry, and the settings accept it
    assert isinstance(make_sampler(settings, 1), RandomSampler)
    proxy = ProxySettings(eval_every=5)
    assert type(make_pruner(StudySettings(cache_dir="x", pruner="hyperband", proxy=proxy)).pruner).__name__ == \
        "HyperbandPruner"


def test_the_command_line_offers_the_registered_heads(densecell):
    code, _, err = densecell("cost", "--head", "psp")
    assert code == 2 and "unknown head 'psp' (one of dpc, aspp)" in err
