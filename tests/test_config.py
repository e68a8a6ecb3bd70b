"""Config loading: template defaults, comments, YAML, and one clear line for every bad value."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from model import main as train_cli
from model.config import Config, ConfigError, config_from_dict, load_config, strip_json_comments, with_overrides

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, raw, name="cfg.json"):
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return path


def test_vit_json_holds_the_template_defaults_but_the_diagnosis_recipe():
    """The defaults are the template's values; config/vit.json differs only in the recipe the diagnosis
    selected (its header says why): MSE, learning rate 3e-3, the sine-cosine start of the positions."""
    cfg = load_config(REPO / "config/vit.json")
    assert cfg == with_overrides(Config(), {"training.loss": "mse", "learning_rate": 3e-3,
                                            "model.positional_init": "sincos"})
    assert (Config().training.loss, Config().learning_rate) == ("l1_ssim", 3e-4)  # the template's
    top = (cfg.model_path, cfg.epochs, cfg.num_workers, cfg.learning_rate, cfg.weight_decay)
    assert top == ("vit", 1000, 4, 3e-3, 3e-4)
    assert cfg.data.hdf5_file == "./gameplay-data.hdf5"
    m = cfg.model
    assert (m.batch_size, m.mixed_precision, m.image_height, m.image_width, m.num_frames, m.channels, m.num_heads,
            m.layers, m.patch_size, m.gradient_accumulation_steps) == (32, False, 144, 160, 3, 128, 2, 5, 16, 1)


def test_vit_cpu_json_is_valid_and_ends_by_steps():
    cfg = load_config(REPO / "config/vit_cpu.json")
    assert cfg.training.max_steps is not None
    assert (cfg.model.image_height, cfg.model.image_width) == (144, 160)


def test_missing_keys_take_the_defaults(tmp_path):
    cfg = load_config(write(tmp_path, {"model": {"channels": 64}}))
    assert cfg == with_overrides(Config(), {"model.channels": 64})
    assert load_config(write(tmp_path, {})) == Config()


def test_comments_are_removed_but_strings_are_kept(tmp_path):
    text = """// a line comment
    {
      /* a block
         comment */
      "data": {"hdf5_file": "http://x/*not a comment*/y \\"quoted\\" // still the string"},  // trailing
      "model_path": "a-b"  // "no string here
    }"""
    cfg = load_config(write(tmp_path, text))
    assert cfg.data.hdf5_file == 'http://x/*not a comment*/y "quoted" // still the string'
    assert cfg.model_path == "a-b"
    assert strip_json_comments('{"a": 1 /* x\ny */}').count("\n") == 1  # line numbers survive


def test_yaml_config(tmp_path):
    path = write(tmp_path, "model:\n  layers: 2  # comment\ntraining:\n  max_steps: 7\n", name="cfg.yaml")
    cfg = load_config(path)
    assert (cfg.model.layers, cfg.training.max_steps) == (2, 7)


def test_round_trip_through_to_dict():
    cfg = with_overrides(Config(), {"model.output": "warp", "training.optimizer": "radam"})
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_overrides_are_validated():
    with pytest.raises(ConfigError, match="config key 'model.patch_size': 15 does not divide model.image_height"):
        with_overrides(Config(), {"model.patch_size": 15})
    with pytest.raises(ConfigError, match="config key 'model.chanels' is unknown; did you mean 'model.channels'"):
        with_overrides(Config(), {"model.chanels": 64})


BAD_CONFIGS = [
    ({"model": {"chanels": 64}}, "config key 'model.chanels' is unknown; did you mean 'model.channels'?"),
    ({"batch_size": 8}, "config key 'batch_size' is unknown; did you mean 'model.batch_size'?"),
    ({"modell": {}}, "config key 'modell' is unknown; did you mean 'model'?"),
    ({"model": {"layers": True}}, "config key 'model.layers' must be an integer, got true"),
    ({"model": {"layers": 2.0}}, "config key 'model.layers' must be an integer, got 2.0"),
    ({"model": {"channels": "64"}}, 'config key \'model.channels\' must be an integer, got the string "64"'),
    ({"model": {"mixed_precision": 1}}, "config key 'model.mixed_precision' must be true or false, got 1"),
    ({"learning_rate": False}, "config key 'learning_rate' must be a number, got false"),
    ({"training": {"max_steps": "all"}}, "config key 'training.max_steps' must be an integer or null"),
    ({"model": [1, 2]}, "config key 'model' must be an object, got a list"),
    ({"model": {"batch_size": 0}}, "config key 'model.batch_size': must be at least 1, got 0"),
    ({"model": {"num_frames": 0}}, "config key 'model.num_frames': must be at least 1, got 0"),
    ({"learning_rate": -1}, "config key 'learning_rate': must be positive, got -1.0"),
    ({"model": {"patch_size": 15}}, "config key 'model.patch_size': 15 does not divide model.image_height 144"),
    ({"model": {"image_width": 168}}, "config key 'model.patch_size': 16 does not divide model.image_width 168"),
    ({"model": {"channels": 100, "num_heads": 3}},
     "config key 'model.channels': 100 is not divisible by model.num_heads 3"),
    ({"model": {"output": "residual", "num_frames": 1}}, "config key 'model.output': 'residual' needs model.num_frames > 1"),
    ({"model": {"output": "flow"}}, "config key 'model.output': 'flow' is not one of frame, residual, warp"),
    ({"model": {"warp_radius": 2}}, "config key 'model.warp_radius': applies to model.output 'warp' only"),
    ({"model": {"output": "warp", "warp_radius": 0}}, "config key 'model.warp_radius': must be a positive integer, got 0"),
    ({"model": {"num_frames": 1, "mask_percentage": 0.001}},
     "config key 'model.mask_percentage': 0.001 masks no patch"),
    ({"model": {"output": "residual", "change_radius": -1}}, "config key 'model.change_radius': must be a non-negative integer"),
    ({"model": {"change_radius": 4}}, "config key 'model.change_radius': 4 needs model.output 'residual' or 'warp'"),
    ({"model": {"output": "residual", "num_frames": 2, "change_radius": 4}},
     "config key 'model.change_radius': 4 needs model.output 'residual' or 'warp' and model.num_frames > 2"),
    ({"data": {"validation_fraction": 0.5, "test_fraction": 0.5}},
     "config key 'data.test_fraction': 0.5 and data.validation_fraction 0.5 leave no frames to train on"),
    ({"data": {"validation_fraction": 1.0}}, "config key 'data.validation_fraction': must lie in [0, 1), got 1.0"),
    ({"training": {"optimizer": "sgd"}}, "config key 'training.optimizer': 'sgd' is not one of adamw, radam"),
    ({"model_path": "runs/vit"}, "config key 'model_path': 'runs/vit' must be a plain name"),
    ([1, 2], "a config must be an object of keys, got list"),
]


@pytest.mark.parametrize("raw, message", BAD_CONFIGS, ids=[m.split(":")[0][:40] for _, m in BAD_CONFIGS])
def test_bad_values_fail_with_one_line_naming_the_key(tmp_path, raw, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, raw))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name, text, message", [
    ("cfg.json", '{"model": {"layers": 2,}}', "invalid JSON at line 1 column"),
    ("cfg.json", '{"a": 1 /* never closed', "unterminated /* comment"),
    ("cfg.yaml", "model: [unclosed", "invalid YAML"),
    ("cfg.toml", "x = 1", "unsupported config format '.toml'"),
])
def test_unreadable_files(tmp_path, name, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text, name=name))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.json"):
        load_config(tmp_path / "nope.json")


def test_cli_prints_one_error_line_and_exits_2(tmp_path, capsys):
    path = write(tmp_path, {"model": {"patch_size": 15}})
    assert train_cli.main(["-cfg", str(path), "--train", "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == "error: config key 'model.patch_size': 15 does not divide model.image_height 144\n"
    assert not (tmp_path / "out").exists()


def test_cli_process_has_no_traceback(tmp_path):
    path = write(tmp_path, {"model": {"layers": "five"}})
    result = subprocess.run([sys.executable, "-m", "model.main", "-cfg", str(path), "--train"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == 'error: config key \'model.layers\' must be an integer, got the string "five"'


@pytest.mark.parametrize("argv, message", [
    (["--train", "--num-gpus", "0"], "--num-gpus must be at least 1, got 0"),
    (["--validate"], "--validate needs --load CKPT"),
    (["--train", "--max-steps", "0"], "must be at least 1, got 0"),
    (["--train", "--bogus"], "unrecognized arguments: --bogus"),
    (["--train", "--validate"], "not allowed with argument"),
])
def test_bad_flags_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        train_cli.parse_args(["-cfg", str(write(tmp_path, {}))] + argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_single_dash_long_flags():
    args = train_cli.parse_args(["-cfg", "c.json", "-train", "-load", "x.ckpt", "-n", "3", "-device", "1",
                                 "-scratch", "/s", "-num-gpus", "1", "-max-steps", "5"])
    assert (args.cfg, args.train, args.load, args.run_number, args.device, args.scratch, args.max_steps) == \
        ("c.json", True, "x.ckpt", 3, 1, "/s", 5)
    assert train_cli.run_name(Config(), 1, 3) == "vit.device1.run3"
    assert train_cli.run_name(Config(), 0) == "vit.device0"


def test_the_config_knows_the_losses_nn_implements():
    from model import config
    from nn import loss
    assert config.LOSSES == loss.LOSSES


def test_a_config_can_start_from_a_base_and_replace_keys_section_by_section(tmp_path):
    write(tmp_path, '{"model_path": "base", "learning_rate": 0.01, "model": {"layers": 2, "channels": 32}}',
          name="base.json")
    (tmp_path / "exp").mkdir()
    path = write(tmp_path / "exp", '{"base": "../base.json", "model_path": "child", "model": {"layers": 3}}',
                 name="child.json")
    cfg = load_config(path)
    assert (cfg.model_path, cfg.learning_rate, cfg.model.layers, cfg.model.channels) == ("child", 0.01, 3, 32)
    loop = write(tmp_path, '{"base": "loop.json"}', name="loop.json")
    with pytest.raises(ConfigError, match="leads back to"):
        load_config(loop)
    missing = write(tmp_path, '{"base": "nothere.json"}', name="orphan.json")
    with pytest.raises(ConfigError, match="config file not found: .*nothere.json"):
        load_config(missing)


def test_every_config_file_in_the_repository_loads():
    for path in sorted(Path("config").rglob("*.json")):
        load_config(path)


def test_the_warp_radius_is_stored_resolved():
    assert with_overrides(Config(), {"model.output": "warp"}).model.warp_radius == 2
    assert Config().model.warp_radius is None
