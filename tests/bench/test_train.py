"""`mtrec bench train` runs its four paths, the streamed one over a real split in small windows."""
from benchmarks import train


def test_bench_train_reports_the_streamed_path_beside_the_limit():
    text = train.run(rows=3000, backbones=["mmoe"], batch_size=256, epochs=1, window_rows=700)
    row = next(line for line in text.splitlines() if line.startswith("| mmoe |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 9 and all(c.replace(",", "").replace("%", "").replace("x", "").replace(".", "").isdigit()
                                   for c in cells[1:])
    assert "stream samples/s" in text and "700-row windows" in text
