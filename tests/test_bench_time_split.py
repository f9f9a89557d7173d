"""bench.time_split part 2: what a decoder pass costs by width and by exit, what a verify
pass continuing from an exit's hidden states would cost, and what copying the cache
costs, for any package."""
from __future__ import annotations

import json

from bench.time_split import REUSE_POSITIONS, main


def test_pass_costs_cover_every_exit_and_the_cache_copy(tiny_package, tmp_path, capsys):
    package = tiny_package("t5", "fp32")[0]
    assert main([str(package), "--configs", "", "--cached", "6", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    costs = json.loads((tmp_path / "time_split.json").read_text())["passes"]
    exits = ["1", "2"]  # a 3-layer decoder's first k layers
    assert costs["cached_tokens"] == 6 and costs["one_token_ms"] > 0
    assert list(costs["by_exit"]) == exits and list(costs["verify_upper_layers"]) == exits
    assert all(v > 0 for v in [*costs["by_exit"].values(), *costs["verify_upper_layers"].values(),
                               costs["verify_all_layers"]])
    copy = costs["staging_copy_ms"]
    assert copy["all"] > 0 and list(copy["first"]) == exits
    out = capsys.readouterr().out
    assert f"a verify pass over {REUSE_POSITIONS} positions" in out
    assert "saved per round, net of the extra draft step" in out
