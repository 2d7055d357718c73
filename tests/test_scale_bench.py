"""benchmarks/scale_bench.py's synthetic data: the scaled counts it reports are the data it writes."""
import numpy as np

from benchmarks.scale_bench import perturbed_title, read_beauty, write_synthetic


def _beauty(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "user_sequence.txt").write_text("U1 A B C\nU2 B C\nU3 C A B D\n")
    (src / "items_asin_title.tsv").write_text("asin\ttitle\nA\tred lip gloss\nB\tblue nail polish\n"
                                              "C\tgreen eye shadow\nD\tfoundation &amp; primer\n")
    return src


def test_scaled_users_and_items(tmp_path):
    src = _beauty(tmp_path)
    counts = write_synthetic(str(src), str(tmp_path / "out"), user_scale=3, item_scale=2, seed=0)
    histories, titles = read_beauty(str(tmp_path / "out"))
    assert counts == {"users": 9, "items": 8, "events": sum(map(len, histories))}
    assert len(histories) == 9 and len(titles) == 8
    real = {tuple(h) for h in read_beauty(str(src))[0]}
    for h in histories:  # a real history, on one copy of the catalog throughout
        suffixes = {a.partition("-")[2] for a in h}
        assert len(suffixes) == 1 and tuple(a.partition("-")[0] for a in h) in real
        assert all(a in titles for a in h)
    assert titles["A"] == "red lip gloss" and titles["A-1"] != titles["A"]


def test_perturbed_title_drops_one_word_and_adds_one():
    rng = np.random.default_rng(0)
    out = perturbed_title("one two three four", "alpha beta", rng).split()
    assert len(out) == 4 and len(set(out) & {"one", "two", "three", "four"}) == 3
    assert set(out) - {"one", "two", "three", "four"} <= {"alpha", "beta"}
