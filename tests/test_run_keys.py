"""The run keys' one declaration (suite/conf/keys.py): config.yaml, the plan, the hash and verify read it, and the
config hashes of records written before it are unchanged (pinned below: computed before the declaration existed)."""

from __future__ import annotations

import copy

import pytest
from omegaconf import OmegaConf

from mlo_bench.suite.conf import keys
from mlo_bench.suite.run.compose import compose
from mlo_bench.suite.run.plan import ConfigError, prepare
from mlo_bench.suite.run.records import HASHED_UNLESS_DEFAULT, NON_NUMERIC_KEYS, config_hash

OPT = {"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08,
       "eps_root": 0.0, "milestones": [], "gamma": 0.1}
#: the config of ``mlo-bench run task=quadratic method=cg steps=5 seed=0 isolate=false progress=false`` as recorded
RECORDED = {
    "task": {"d": 100, "levels": 2, "condition": 10.0, "coupling": None, "ridge": 0.1, "inner": OPT,
             "outer": {**OPT, "lr": 0.01}, "name": "quadratic"},
    "backend": {"name": "torch"}, "method": {"iterations": 10, "warm_start": False, "negative_curvature": "continue",
                                             "name": "cg"},
    "seed": 0, "steps": 5, "inner_steps": 1, "level_steps": {}, "ordering": "inner_first", "eval_every": 0,
    "dtype": "float32", "fused": None, "threads": 1, "device": "auto", "results_dir": "/tmp/hk_before", "log_every": 0,
    "progress": False, "hypergrad_check": True, "isolate": False, "resume": True, "repeat": 0, "plugins": [],
    "limits": {"time_s": None, "memory_gb": None}, "budget": {"max_d_materialised": None, "max_dense_gb": None},
}
#: the keys added after the first records, absent from a record written before them
LATER = ("threads", "fused", "plugins", "repeat", "ordering", "eval_every", "level_steps", "isolate", "resume",
         "limits", "budget")
#: a plan built from a plain dict (no Hydra): the keys every such config gives
PLAIN = {"task": {"name": "quadratic", "d": 6}, "backend": {"name": "torch"}, "method": {"name": "unroll"},
         "seed": 0, "steps": 1, "inner_steps": 1, "dtype": "float64", "device": "cpu", "results_dir": "/tmp/x",
         "log_every": 0, "progress": False, "hypergrad_check": False}


def _with(**over):
    return {**copy.deepcopy(RECORDED), **over}


#: hashes computed by the code before the run keys had one declaration (commit 8f89423): they must never move
PINNED = [
    (RECORDED, "1b7819cd095ce9492865290db2edb52487fb8065b460a94cc0a177011bb832a4"),
    ({k: v for k, v in RECORDED.items() if k not in LATER},
     "1bb0d5dd2e9fa84bdaf786bf1175ed2865a90c0e82236c04f9ac57e56d9bdec5"),
    (_with(threads=0), "5bc78ba58f91b27dc39931d6451510ba204ccc5eff5e86759e26003b6a04493c"),
    (_with(threads=2), "fc7cf3f2c025e234a81ea93676b0308254003463e590c170fb7a4ab703c29c71"),
    (_with(threads=None), "1b7819cd095ce9492865290db2edb52487fb8065b460a94cc0a177011bb832a4"),
    (_with(fused=True), "d881681eedc2b2b1263654729d39d23462830cb77ab85001e914dd8d080e532b"),
    (_with(fused=False), "5d8347884b4fdac5bace184e41c3ec7d82d2fa8557c743202b6e1d5793b69ebe"),
    (_with(level_steps={"inner": 2}), "fd2fe95f81047a0aa4eade94d1f454bb5827dd3be9b4f9c962a11a354d49be4a"),
    (_with(level_steps=None, plugins=None), "1b7819cd095ce9492865290db2edb52487fb8065b460a94cc0a177011bb832a4"),
    (_with(repeat=1), "bb00669fe17404aaeba192d54be3c7d2b25caa7c1b86cce5453863b60102e765"),
    (_with(ordering="lookahead"), "39ff5cce3e963bc2ff2da4a636b8cecc4d10635aef1d8869e9fb333b676d0651"),
    (_with(variant="erm"), "1b7819cd095ce9492865290db2edb52487fb8065b460a94cc0a177011bb832a4"),
    (_with(method={**RECORDED["method"], "negative_curvature": "stop"}),
     "a983c3fd6435ec1279c409c4746e306d685a92594009b3597f3570c09f7fb57c"),
    (_with(task={**RECORDED["task"], "inner": {**OPT, "eps_root": 1e-8}}),
     "2bfb2afe3fb57c15ad76d6acf3f1e5489f4a4f21df1c58ae6579f34843ece463"),
]


@pytest.mark.parametrize("config,expected", PINNED, ids=[f"pin{i}" for i in range(len(PINNED))])
def test_the_hash_of_a_fixed_config_is_what_it_was_before_the_declaration(config, expected):
    assert config_hash(config) == expected


def test_a_plan_from_a_plain_dict_fills_the_same_values_and_hash_as_before():
    plan = prepare(copy.deepcopy(PLAIN))
    assert config_hash(plan.config) == "b3c2784f9174b49f372297ccff5e8c6cf5bdd7a4ec7c784613d119a1b7b7969e"
    assert (plan.threads, plan.isolate, plan.resume, plan.fused) == (0, False, False, None)
    assert plan.config["budget"] == {"max_d_materialised": None, "max_dense_gb": None}


# ---- the one declaration and its readers ------------------------------------------------------------------------
def test_config_yaml_gives_exactly_the_declared_defaults():
    """What Hydra composes with no override is the declaration's ``default`` for every key (an option's name for
    task, backend and method), and config.yaml holds no key the declaration does not."""
    composed = OmegaConf.to_container(compose([]), resolve=True)
    composed.pop("hydra", None)
    declared = {k.name for k in keys.RUN_KEYS if k.default is not keys.OMITTED}
    assert set(composed) == declared
    for key in keys.RUN_KEYS:
        if key.default is keys.OMITTED:
            continue
        value = composed[key.name]["name"] if key.name in ("task", "backend", "method") else composed[key.name]
        assert value == key.default, f"config.yaml {key.name}: {value!r}, declared {key.default!r}"


def test_the_hash_rules_and_verify_keys_are_read_from_the_declaration():
    from mlo_bench.suite.certify import options

    assert NON_NUMERIC_KEYS == tuple(k.name for k in keys.RUN_KEYS if k.hash == keys.UNHASHED)
    assert HASHED_UNLESS_DEFAULT == {k.name: k.default for k in keys.RUN_KEYS if k.hash == keys.UNLESS_DEFAULT}
    assert options.KEYS == tuple(k.name for k in keys.RUN_KEYS if k.verify)
    assert all(f"{k}=" in options.USAGE for k in options.KEYS), "verify's usage names every key it takes"
    assert keys.TOP_LEVEL_KEYS == tuple(k.name for k in keys.RUN_KEYS)
    assert all(k.hash in keys.HASH_RULES for k in keys.RUN_KEYS)


def test_nested_hash_defaults_are_the_config_classes_defaults():
    from mlo_bench.suite.engine.optim import OptimizerConfig
    from mlo_bench.suite.plugins import registry

    cg = registry.get("method", "cg").Config()
    stochastic = ("bilevel_quadratic", "logreg_hyper", "data_cleaning")
    samplers = {registry.get("task", t).Config().sampler for t in stochastic}
    assert samplers == {"draw"}
    assert keys.NESTED_UNLESS_DEFAULT == {"eps_root": OptimizerConfig().eps_root,
                                          "negative_curvature": cg.negative_curvature, "sampler": "draw"}


def test_a_plain_dict_config_runs_each_missing_key_as_declared():
    config = prepare(copy.deepcopy(PLAIN)).config
    for key in keys.RUN_KEYS:
        if key.absent is keys.OMITTED:
            assert key.name not in config
        elif key.absent is not keys.REQUIRED:
            assert config[key.name] == key.absent_value, key.name


def test_the_entry_paths_differ_only_where_older_configs_ran_otherwise():
    """Hydra composes ``default``; a plain-dict config without the key runs ``absent``. They differ only for the keys
    whose older configs ran otherwise (in-process, unresumed; threads at each library's default): a new difference is
    a decision, made here."""
    differ = {k.name for k in keys.RUN_KEYS if k.absent not in (keys.REQUIRED, keys.DEFAULT) and k.absent != k.default}
    assert differ == {"isolate", "resume", "threads"}


@pytest.mark.parametrize("key", [k.name for k in keys.RUN_KEYS if k.absent is keys.REQUIRED
                                 and k.name not in ("task", "backend", "method")])
def test_a_plain_dict_config_without_a_required_key_is_one_line_naming_it(key):
    with pytest.raises(ConfigError, match=f"^config key\\(s\\) {key} missing") as info:
        prepare({k: v for k, v in copy.deepcopy(PLAIN).items() if k != key})
    assert "\n" not in str(info.value)


def test_the_default_threads_keep_the_recorded_hash_and_a_declared_key_cannot_be_misspelled():
    assert keys.in_hash("threads", 1) is False and keys.in_hash("threads", 2) is True
    assert keys.in_hash("results_dir", "x") is False and keys.in_hash("seed", 0) is True
    assert keys.in_hash("not_declared", None) is True, "an undeclared key (an old record's) is hashed as before"
    with pytest.raises(KeyError, match="unknown run key 'thread'"):
        keys.run_key("thread")
