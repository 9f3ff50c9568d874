"""The server's engine: a continuous batch (gpt/model/batching.py) run in a thread of its own,
fed requests as they come.

A request waits in a bounded queue until a slot is free; it is then prefilled and decodes with
every other active request, one forward a token for all of them (see gpt/model/batching.py).
A request whose client has gone (`cancelled`) frees its slot at the next step. The web server's
event loop only hands requests in and text out.
Plain torch, no Lightning.
"""

from __future__ import annotations

import collections
import threading
import time

import torch

from gpt.model.batching import Batch, Request
from gpt.model.models import GPT
from gpt.tokenizers import Tokenizer

Job = Request  # one choice of an API request: a sequence to write, with what to call with its text


class QueueFull(Exception):
    """More requests are waiting than the server holds: the client should try again later."""


class Engine:
    """Runs jobs in batches of up to `slots`, with up to `max_waiting` more waiting for a slot."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, slots: int = 16, max_waiting: int = 64):
        self.batch = Batch(model, tokenizer, slots)
        self.model, self.tokenizer = self.batch.model, tokenizer
        self.slots, self.max_waiting = slots, max_waiting
        self.waiting: collections.deque[Job] = collections.deque()
        self.lock = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="engine", daemon=True)
        self.thread.start()

    @property
    def active(self) -> dict[int, Job]:
        return self.batch.active

    @property
    def steps(self) -> int:
        return self.batch.steps  # decode steps run (a batch of B rows is one step)

    @property
    def busy(self) -> int:
        return len(self.active) + len(self.waiting)

    def submit(self, jobs: list[Job]) -> None:
        """Queue a request's jobs together, or refuse them all when the queue is full."""
        with self.lock:
            if self.stopping:
                raise QueueFull("the server is shutting down")
            if len(self.waiting) + len(jobs) > self.max_waiting:
                raise QueueFull(f"{len(self.waiting)} requests are waiting for one of {self.slots} slots; try again")
            self.waiting.extend(jobs)
            self.lock.notify()

    def stop(self, timeout: float = 60.0) -> None:
        """Take no more jobs, finish those in flight, then end the thread."""
        with self.lock:
            self.stopping = True
            self.lock.notify()
        self.thread.join(timeout)

    def run(self) -> None:
        while True:
            with self.lock:
                while not self.waiting and not self.active and not self.stopping:
                    self.lock.wait()
                if self.stopping and not self.waiting and not self.active:
                    return
                admitted = []
                free = self.batch.free_slots()
                while free and self.waiting:  # admitted under the lock: `busy` never misses a job in between
                    job = self.waiting.popleft()
                    if not job.cancelled:
                        self.batch.admit(job, free.pop(0))
                        admitted.append(job)
            try:
                with torch.inference_mode():
                    if admitted:
                        self.batch.prefill(admitted)
                    self.batch.step()
            except Exception as e:  # a bug must not hang its clients: end their requests with it
                for job in list(self.active.values()):
                    self.batch.finish(job, f"error: {type(e).__name__}: {e}")


def wait_idle(engine: Engine, timeout: float) -> bool:
    """Whether the engine ran out of work within timeout seconds (for tests and shutdown)."""
    end = time.monotonic() + timeout
    while engine.busy and time.monotonic() < end:
        time.sleep(0.01)
    return not engine.busy
