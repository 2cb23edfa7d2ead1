"""The cold-start bench runs each repetition at another stack depth (bench/README.md, "Stack
depth"): ``at_depth`` adds exactly the frames asked for, and ``depths`` spreads the repetitions
over a little more than one 16 KiB chunk of the interpreter's frame stack, starting at the code's
own depth."""

from __future__ import annotations

import sys
import threading
from itertools import pairwise

from bench._coldstart_child import at_depth, threads_at_depth
from bench.coldstart import DEPTH_SPAN, depths


def frames_below() -> int:
    depth, frame = 0, sys._getframe(1)
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


def test_at_depth_calls_the_function_that_many_frames_deeper_and_returns_its_value() -> None:
    # GIVEN the depth of a direct call through at_depth
    base = at_depth(0, frames_below)
    for frames in (1, 7, DEPTH_SPAN):
        # THEN asking for more frames adds exactly those
        assert at_depth(frames, frames_below) == base + frames
    assert at_depth(3, lambda: "reply") == "reply"


def test_a_frame_of_at_depth_is_small_enough_for_the_span_to_cover_a_chunk() -> None:
    # GIVEN the size of the frames at_depth stacks: its code's slots (locals and value stack) plus
    # the interpreter's frame header (about ten pointers on 3.11 and 3.12)
    code = at_depth.__code__
    slots = code.co_nlocals + len(code.co_cellvars) + len(code.co_freevars) + code.co_stacksize
    frame_bytes = (slots + 10) * 8
    # THEN the span reaches past one 16 KiB chunk of them, and not by much more than one
    assert DEPTH_SPAN * frame_bytes >= 16 * 1024
    assert DEPTH_SPAN * frame_bytes < 2 * 16 * 1024


def test_repetitions_start_at_the_codes_own_depth_and_spread_over_the_span() -> None:
    for reps in (1, 3, 11, 21):
        found = depths(reps)
        assert len(found) == reps and found[0] == 0
        assert found == sorted(set(found)) and found[-1] < DEPTH_SPAN
        # evenly: no two neighbours further apart than the span's share, rounded up
        assert all(b - a <= -(-DEPTH_SPAN // reps) for a, b in pairwise(found))


def depth_in_a_thread() -> int:
    found: list[int] = []
    thread = threading.Thread(target=lambda: found.append(frames_below()))
    thread.start()
    thread.join()
    return found[0]


def test_threads_started_inside_run_their_target_that_much_deeper_and_only_there() -> None:
    # GIVEN the depth of a thread's target started as usual, and inside threads_at_depth(0)
    base = depth_in_a_thread()
    with threads_at_depth(0):
        wrapped = depth_in_a_thread()
    # WHEN threads are started inside threads_at_depth(9)
    with threads_at_depth(9):
        inside = depth_in_a_thread()
    # THEN their targets ran 9 frames deeper than with none asked for (the wrapper's own frames
    # are the same at every depth), and threads started afterwards are as before
    assert inside == wrapped + 9 and wrapped >= base
    assert depth_in_a_thread() == base
