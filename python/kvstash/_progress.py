"""The progress bar Model.process_prefix draws on stderr (only when stderr is a terminal)."""
import sys
import time


class ProgressBar:
    def __init__(self, out=None):
        self.out = out or sys.stderr
        self.enabled = hasattr(self.out, "isatty") and self.out.isatty()
        self.start = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if done >= total:
            if self.drawn:
                self.out.write("\r\033[K")
                self.out.flush()
            return
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(time.monotonic() - self.start, 1e-9)
        eta = (total - done) / max(rate, 1e-9)
        self.out.write(f"\r\033[K[{'#' * filled}{' ' * (width - filled)}] {done}/{total} tokens  "
                       f"{rate:.0f} tokens/s  ETA {eta:.0f}s")
        self.out.flush()
        self.drawn = True
