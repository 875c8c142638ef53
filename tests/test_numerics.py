"""Pinned numerics: set before torch loads, refused when they cannot act, unmoved on an emulated older CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llome import numerics
from llome.compare import differences, fingerprint, read_lock, report

ROOT = Path(__file__).resolve().parents[1]
CONTROLLED = (*numerics.PINS, "MKL_ENABLE_INSTRUCTIONS", numerics.SWITCH, "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# A few training steps of a tiny GPT-NeoX (matmuls, softmax, SDPA, GELU, LayerNorm, AdamW), then a hash of
# the weights: any kernel that rounds differently changes it.
TRAIN_AND_HASH = """
import hashlib, llome, llome.numerics as numerics, torch
from llome.models import build_model
from llome.tokenizer import build_tokenizer
numerics.apply(2)
tokenizer = build_tokenizer(8)
model = build_model({"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 64, "seed": 0}, tokenizer)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
generator = torch.Generator().manual_seed(0)
for _ in range(5):
    ids = torch.randint(3, len(tokenizer), (16, 40), generator=generator)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward(); optimizer.step(); optimizer.zero_grad()
digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode() + tensor.numpy().tobytes())
print(digest.hexdigest())
"""

UNDO_HOOK = "import os; [os.environ.pop(k, None) for k in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_CBWR')]\n"


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    return {**env, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **extra}


def _python(code: str, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=_clean_env(**extra), capture_output=True, text=True)


def test_pin_environment_sets_every_pin(monkeypatch):
    for name in CONTROLLED:
        monkeypatch.delenv(name, raising=False)
    numerics.pin_environment()
    assert {name: os.environ[name] for name in numerics.PINS} == numerics.PINS


def test_a_conflicting_pin_is_refused_by_name(monkeypatch):
    monkeypatch.delenv(numerics.SWITCH, raising=False)
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    with pytest.raises(numerics.NumericsError, match="MKL_CBWR=AUTO"):
        numerics.pin_environment()


def test_native_mode_leaves_the_environment_alone(monkeypatch):
    for name in CONTROLLED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(numerics.SWITCH, "native")
    numerics.pin_environment()
    assert not any(name in os.environ for name in numerics.PINS)
    assert numerics.settings(2) == {"mode": "native", "pins": {}, "threads": 2}


def test_an_unknown_mode_is_an_error(monkeypatch):
    monkeypatch.setenv(numerics.SWITCH, "fast")
    with pytest.raises(numerics.NumericsError, match="LLOME_NUMERICS"):
        numerics.mode()


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_a_bad_thread_count_is_refused(threads):
    with pytest.raises(numerics.NumericsError, match="numerics.threads"):
        numerics.apply(threads)


def test_importing_llome_pins_a_fresh_interpreter_before_torch_loads():
    done = _python("import os, llome, torch; print(os.environ['MKL_CBWR'], torch.backends.cpu.get_cpu_capability())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "COMPATIBLE"


def test_torch_imported_first_without_pins_is_refused_when_a_job_starts():
    # The .venv start-up hook pins every interpreter: undo it, as in a Python that lacks the hook.
    done = _python(UNDO_HOOK + "import torch, llome.numerics as n; n.apply(1)")
    assert done.returncode != 0
    assert "imported before llome" in done.stderr


def test_the_startup_hook_line_pins_and_respects_native():
    line = numerics.startup_hook_line()
    assert line.startswith("import ")  # site.py executes only .pth lines that start with an import
    code = UNDO_HOOK + line + "print(os.environ.get('MKL_CBWR'))"
    assert _python(code).stdout.strip() == "COMPATIBLE"
    assert _python(code, LLOME_NUMERICS="native").stdout.strip() == "None"


def test_the_hook_installs_into_a_site_packages_folder(tmp_path):
    path = Path(numerics.install_hook(str(tmp_path)))
    assert path.name.endswith(".pth") and path.read_text() == numerics.startup_hook_line()


@pytest.mark.slow
def test_pinned_training_is_unmoved_on_an_emulated_older_cpu_and_the_pins_do_act():
    pinned = _python(TRAIN_AND_HASH)
    older = _python(TRAIN_AND_HASH, **numerics.OLDER_CPU)
    native = _python(TRAIN_AND_HASH, LLOME_NUMERICS="native")
    for done in (pinned, older, native):
        assert done.returncode == 0, done.stderr[-2000:]
    assert older.stdout == pinned.stdout
    # Otherwise this test could pass with pins that never reach the kernels.
    assert native.stdout != pinned.stdout


def test_machine_record_names_the_cpu_and_settings():
    record = numerics.machine()
    assert record["cpu"] and record["arch"]
    assert set(numerics.PINS) <= set(record["environment"])


LOCK = """
stages:
  seed_data:
    outs:
    - path: data/seed
      md5: aaa.dir
    - path: reports/02_seed_data.html
      md5: r1
  figures:
    outs:
    - path: metrics/summary.json
      md5: sss
    - path: figures
      md5: fff.dir
"""


def test_a_fingerprint_holds_data_and_the_summary_only():
    assert fingerprint(read_lock(LOCK, "lock")) == {"data/seed": "aaa.dir", "metrics/summary.json": "sss"}


def test_compare_names_outputs_that_differ_or_are_missing():
    expected = {"data/a": "1", "data/b": "2", "data/c": "3"}
    actual = {"data/a": "1", "data/b": "X", "data/d": "4"}
    assert differences(expected, actual) == {"match": ["data/a"], "differ": ["data/b"], "missing": ["data/c"],
                                             "extra": ["data/d"]}
    text, same = report(expected, actual)
    assert not same and "DIFFERENT data/b" in text and "1 of 3 outputs identical" in text
    assert report(expected, dict(expected))[1]


def test_a_lock_that_is_not_one_is_named():
    with pytest.raises(ValueError, match="mylock"):
        read_lock("just: text", "mylock")
    with pytest.raises(ValueError, match="mylock"):
        read_lock("a: [", "mylock")


def test_machine_records_are_kept_out_of_dvc_hashes():
    ignored = (ROOT / ".dvcignore").read_text().split()
    assert "machine.json" in ignored and "timing.json" in ignored
    assert json.loads(json.dumps(numerics.settings(2)))["threads"] == 2


def test_a_result_records_whether_its_numerics_were_pinned(monkeypatch):
    from llome.provenance import make_record

    monkeypatch.delenv(numerics.SWITCH, raising=False)
    pinned = make_record({"a": 1}, code=[])
    monkeypatch.setenv(numerics.SWITCH, "native")
    native = make_record({"a": 1}, code=[])
    assert pinned["numerics"] == {"mode": "pinned", "pins": numerics.PINS}
    assert native["numerics"]["mode"] == "native" and native != pinned
