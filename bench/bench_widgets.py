"""Python-side cost of one lasso at 1M frames: decode + store.assign + recolor message.

Run: .venv/bin/python bench/bench_widgets.py
Baseline in the same run: np.copy of the 1M label array.
"""


import numpy as np
import pandas as pd

from bench._timing import best_of
from xlabel.labels import LabelStore
from xlabel.widgets import FluxScatter




def main(n=1_000_000, selected=100_000):
    features = pd.DataFrame({"frame": np.arange(n), "mean": np.random.default_rng(0).random(n)})
    store = LabelStore(n)
    scatter = FluxScatter(store, features)
    buffer = memoryview(np.arange(selected, dtype=np.int32).tobytes())
    labels = iter(["good", "bad"] * 10)

    def lasso():
        scatter.plot._handle_custom_msg({"type": "selected", "panel": 0}, [buffer])
        scatter.plot._handle_custom_msg({"type": "button", "id": f"assign:{'01'[next(labels) == 'bad']}"}, [])

    base = best_of(lambda: np.copy(store.labels))
    t = best_of(lasso)
    print(f"lasso {selected} of {n}: {t * 1e3:.1f} ms; np.copy baseline {base * 1e3:.2f} ms; "
          f"ratio {t / base:.0f}x")


if __name__ == "__main__":
    main()
