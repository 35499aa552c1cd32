"""benchmarks/quality.py's pure parts: arguments, commands, the interval of the difference, the table.

The training runs themselves (ours and OpenNMT-py's, minutes each) are not run here."""

import json
import shlex
import time
from pathlib import Path

import pytest
from benchmark_module import load_benchmark, unload_benchmark
from click.testing import CliRunner

from seq2seq_lstm.cli import main as cli
from seq2seq_lstm.errors import UserError
from seq2seq_lstm.scoring import metrics as sm
from seq2seq_lstm.scoring import significance as sig

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def quality():
    yield load_benchmark("quality")
    unload_benchmark("quality")


def _args(quality, tmp_path, *extra):
    return quality.parse_args(
        ["--data", str(ROOT / "tests/fixtures/tiny"), "--config", str(ROOT / "configs/tiny.yaml"),
         "--work", str(tmp_path / "work"), *extra]
    )  # fmt: skip


def test_defaults_and_peer_venv_from_environment(quality, monkeypatch):
    monkeypatch.delenv("ONMT_VENV", raising=False)
    args = quality.parse_args([])
    assert (args.data, args.config, args.minutes) == ("data/ding-en-de", "configs/ding_en_de.yaml", 30.0)
    assert (args.work, args.peer_venv, args.cores, args.seed) == (
        "runs/quality",
        "runs/opennmt-venv",
        "0,1",
        1234,
    )
    assert not args.skip_ours and not args.skip_peer
    monkeypatch.setenv("ONMT_VENV", "/somewhere/venv")
    assert quality.parse_args([]).peer_venv == "/somewhere/venv"
    assert quality.parse_args(["--peer-venv", "v"]).peer_venv == "v"


def test_plan_reads_languages_and_seconds(quality, tmp_path):
    plan, cfg = quality.make_plan(_args(quality, tmp_path, "--minutes", "0.5", "--cores", "3,2"))
    assert (plan.src, plan.tgt, plan.seconds, plan.cores) == ("en", "es", 30, (3, 2))
    assert plan.run_ours and plan.run_peer and plan.peer_model == {}
    assert cfg.data.train == str(ROOT / "tests/fixtures/tiny/train")  # both sides read --data


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--minutes", "0"], "--minutes is 0.0; give a positive number"),
        (["--cores", "1,1"], "--cores is '1,1'; give two different core numbers"),
        (["--cores", "a"], "--cores is 'a'"),
        (["--bootstrap", "0"], "--bootstrap is 0; give 1 to 100000 resamples"),
        (["--skip-ours"], "--skip-ours: "),
        (["--skip-peer"], "hyp.peer does not exist; run that side first"),
        (["--config", str(ROOT / "configs/lm_en.yaml")], "trains a lm model; give a translation config"),
    ],
)
def test_bad_arguments_are_one_line(quality, tmp_path, extra, message):
    with pytest.raises(UserError, match=None) as e:
        quality.make_plan(_args(quality, tmp_path, *extra))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_split_and_separate_tokenizers_are_refused(quality, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.en", "train.es", "valid.en", "valid.es", "test.en"):
        (data / name).write_text("a\n")
    args = ["--data", str(data), "--config", str(ROOT / "configs/tiny.yaml"), "--work", str(tmp_path)]
    assert quality.main(args) == 1
    assert (
        capsys.readouterr().err
        == f"Error: {data / 'test.es'} does not exist; --data needs train, valid and test\n"
    )
    with pytest.raises(UserError, match="tokenizer.joint is false; the peer reads one joint"):
        quality.make_plan(_args(quality, tmp_path, "--config", _separate_config(tmp_path)))


def _separate_config(tmp_path):
    path = tmp_path / "separate.yaml"
    text = (ROOT / "configs/tiny.yaml").read_text().replace("tokenizer:\n", "tokenizer:\n  joint: false\n", 1)
    path.write_text(text)
    return str(path)


def test_commands_pin_cores_and_share_the_budget(quality, tmp_path):
    plan, _ = quality.make_plan(_args(quality, tmp_path, "--minutes", "2", "--seed", "7"))
    train, translate = quality.ours_steps(plan)
    assert train.argv[:3] == ["taskset", "-c", "0"] and translate.argv[:3] == ["taskset", "-c", "0"]
    assert "training.max_time=2.0" in train.argv and "training.num_threads=1" in train.argv
    assert "training.seed=7" in train.argv and "--overwrite" in train.argv
    assert translate.argv[-4:] == ["--beam-size", "5", "--threads", "1"]
    peer, detok = quality.peer_steps(plan)
    assert peer.argv[:5] == ["taskset", "-c", "1", "bash", str(quality.PEER_SCRIPT)]
    assert peer.argv[-3:] == [str(plan.work / "tokenizer/spm.model"), "120", str(plan.work / "peer")]
    assert peer.env["ONMT_SEED"] == "7" and peer.env["OMP_NUM_THREADS"] == "1" and "BRNN" not in peer.env
    assert detok.argv[-1] == str(plan.work / "peer" / quality.PEER_OUTPUT)
    sized = quality.Plan(**{**vars(plan), "peer_model": {"ONMT_HIDDEN": "32"}})
    assert quality.peer_steps(sized)[0].env["ONMT_HIDDEN"] == "32"


def test_peer_model_is_the_reference_or_ours(quality):
    from seq2seq_lstm.config import load_config

    cfg = load_config(ROOT / "configs/tiny.yaml", ["model.bidirectional=true", "model.dropout=0.1"])
    assert quality.peer_model(cfg, "reference") == {"BRNN": "1"}  # the script's 2x512 reference
    assert quality.peer_model(cfg, "ours") == {
        "BRNN": "1", "ONMT_EMB": "32", "ONMT_HIDDEN": "32", "ONMT_DROPOUT": "0.1",
        "ONMT_ENC_LAYERS": "1", "ONMT_DEC_LAYERS": "1",
    }  # fmt: skip
    assert quality.peer_model(load_config(ROOT / "configs/tiny.yaml"), "reference") == {}


def test_reused_sides_keep_the_commands_that_made_them(quality, tmp_path):
    plan, _ = quality.make_plan(_args(quality, tmp_path, "--minutes", "5"))
    fresh = quality.recorded_commands(plan, {}, tokenizer_trained=True)
    assert set(fresh) == {"tokenizer", "ours_train", "ours_translate", "peer", "peer_detokenize", "evaluate"}
    old = {"commands": {"tokenizer": "t", "ours_train": "a", "ours_translate": "b", "peer": "c"}}
    plan = quality.Plan(**{**vars(plan), "run_ours": False})
    kept = quality.recorded_commands(plan, old, tokenizer_trained=False)
    assert (kept["tokenizer"], kept["ours_train"], kept["ours_translate"]) == ("t", "a", "b")
    assert kept["peer"] == fresh["peer"] and " 300 " in kept["peer"]  # rerun: this run's minutes
    assert kept["peer_detokenize"] == fresh["peer_detokenize"]


def test_step_shell_line(quality, tmp_path):
    step = quality.Step("x", ["echo", "a b"], tmp_path / "out", tmp_path / "err", env={"K": "v w"})
    assert step.shell() == f"K='v w' echo 'a b' > {tmp_path / 'out'}"
    assert quality.Step("y", ["ls"], tmp_path / "log").shell() == "ls"


def test_a_failing_side_stops_the_other(quality, tmp_path):
    fail = [quality.Step("peer", ["sh", "-c", "exit 3"], tmp_path / "peer.log")]
    never = tmp_path / "never"
    slow = [quality.Step("ours_train", ["sh", "-c", "sleep 30"], tmp_path / "a.log"),
            quality.Step("ours_translate", ["touch", str(never)], tmp_path / "b.log")]  # fmt: skip
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=f"^peer failed \\(exit 3\\); see {tmp_path / 'peer.log'}$"):
        quality.run_sides([slow, fail])
    assert time.perf_counter() - t0 < 10  # the sleep was stopped, not waited for
    assert not never.exists()  # and the rest of its chain never started


def test_sides_run_at_the_same_time(quality, tmp_path):
    chains = [[quality.Step(name, ["sh", "-c", "sleep 1"], tmp_path / f"{name}.log")] for name in ("a", "b")]
    t0 = time.perf_counter()
    walls = quality.run_sides(chains)
    assert set(walls) == {"a", "b"} and all(w >= 1 for w in walls.values())
    assert time.perf_counter() - t0 < 1.9  # side by side, not one after the other


HYPS = {
    "ours": ["the cat sat on the mat", "a dog barks", "it is raining today", "hello world", "good night all"],
    "peer": ["the cat sat on mat", "dog barks loudly", "it rains", "hello there world", "good evening"],
}
REFS = [
    ["the cat sat on the mat", "a dog barks", "it is raining today", "hello world", "good night everyone"]
]


def test_difference_interval_is_on_sacrebleus_own_resamples(quality):
    options = sm.ScoreOptions(metrics=quality.METRICS)
    diff = quality.difference_intervals(HYPS["ours"], HYPS["peer"], REFS, options, 200)
    paired = sig.paired_test(("peer", HYPS["peer"]), [("ours", HYPS["ours"])], REFS, options, "bs", 200)
    for key, name in zip(quality.METRICS, ("BLEU", "chrF2"), strict=True):
        peer, ours = paired.scores[name]  # the baseline first
        assert diff[key]["ours_mean"] == pytest.approx(ours.mean, abs=1e-4)  # the same resamples
        assert diff[key]["peer_mean"] == pytest.approx(peer.mean, abs=1e-4)
        assert diff[key]["difference"] == pytest.approx(ours.score - peer.score)
        assert diff[key]["low"] <= diff[key]["high"]
    # ours is right on 4 of 5 sentences and the peer on none: no resample favours the peer, and on
    # chrF every one favours ours (BLEU ties at 0 on resamples of sentences under 4 words)
    assert diff["chrf"]["low"] > 0 and diff["bleu"]["low"] >= 0


def test_identical_systems_differ_by_exactly_zero(quality):
    options = sm.ScoreOptions(metrics=quality.METRICS)
    diff = quality.difference_intervals(HYPS["peer"], HYPS["peer"], REFS, options, 50)
    assert all((d["difference"], d["low"], d["high"]) == (0.0, 0.0, 0.0) for d in diff.values())


def _scored_work(quality, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for lang, lines in (("en", REFS[0]), ("es", REFS[0])):
        for split in ("train", "valid", "test"):
            (data / f"{split}.{lang}").write_text("\n".join(lines) + "\n")
    work = tmp_path / "work"
    work.mkdir()
    for side, lines in HYPS.items():
        (work / f"hyp.{side}").write_text("\n".join(lines) + "\n")
    args = ["--data", str(data), "--config", str(ROOT / "configs/tiny.yaml"), "--work", str(work)]
    plan, _ = quality.make_plan(
        quality.parse_args([*args, "--skip-ours", "--skip-peer", "--bootstrap", "100"])
    )
    return plan


def test_scores_equal_the_recorded_evaluate_command(quality, tmp_path):
    plan = _scored_work(quality, tmp_path)
    scored = quality.score(plan)
    argv = shlex.split(quality.evaluate_command(plan))
    result = CliRunner().invoke(cli, [*argv[argv.index("evaluate") :], "--format", "json", "--width", "2"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [s["score"] for s in document["scores"]] == [s["score"] for s in scored["scores"]["ours"]]
    ours, theirs = document["paired"][0], scored["paired"]
    assert ours["systems"][0]["system"] == f"Baseline: {plan.work / 'hyp.peer'}"  # file names there
    assert [s["system"] for s in theirs["systems"]] == ["Baseline: OpenNMT-py 3.5.1", "seq2seq-lstm"]
    assert [{**s, "system": ""} for s in ours["systems"]] == [{**s, "system": ""} for s in theirs["systems"]]
    assert ours["signatures"] == theirs["signatures"]


def test_table_prints_scores_interval_and_signatures(quality, tmp_path):
    plan = _scored_work(quality, tmp_path)
    facts = {
        "ours": {"toolkit": "seq2seq-lstm", "steps": 2501, "minutes": 30.0},
        "peer": {"toolkit": "OpenNMT-py 3.5.1", "steps": None, "minutes": 30.0},
    }
    commands = quality.recorded_commands(plan, {}, tokenizer_trained=True)
    result = quality.build_result(plan, commands, facts, quality.score(plan))
    json.dumps(result)  # the JSON written to WORK/quality.json
    assert result["commands"]["ours_train"].startswith("OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 ")
    lines = quality.format_table(result).splitlines()
    bleu = result["scores"]["ours"][0]
    assert lines[0].startswith(f"5 test sentences of {plan.data}, beam 5; 30 min of training each")
    assert lines[1].split() == ["system", "steps", "BLEU", "chrF2"]
    ours, peer = ([f"{s['score']:.2f}" for s in result["scores"][side]] for side in ("ours", "peer"))
    assert lines[2].split() == ["seq2seq-lstm", "2501", *ours]
    assert lines[3].split() == ["OpenNMT-py", "3.5.1", "?", *peer]  # steps unknown: a question mark
    d, p = result["difference"]["bleu"], result["paired"]["systems"][1]["BLEU"]["p_value"]
    assert f"BLEU   {d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]  p = {p:.4f}" in lines[5]
    assert "100 paired bootstrap resamples (seed 12345)" in lines[4]
    assert (
        lines[8]
        == f"  seq2seq-lstm       BLEU|{bleu['signature']} = {bleu['score']:.2f} {bleu['verbose_score']}"
    )
    assert lines[10].startswith(
        "  OpenNMT-py 3.5.1   BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:"
    )
    assert lines[-1].startswith("  OpenNMT-py 3.5.1   chrF2|nrefs:1|")
    facts["peer"]["minutes"] = 20.0  # a side rerun alone with other --minutes
    assert "UNEQUAL training times: ours 30.0 min, peer 20.0 min" in quality.format_table(result)
