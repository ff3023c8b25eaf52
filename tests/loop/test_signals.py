"""StopSignal: SIGTERM/SIGINT as a flag the loop polls (moved from vsrkit.checkpoint)."""

from __future__ import annotations

import os
import signal
import threading
import warnings

import pytest

from vsrkit.loop import StopSignal


def test_stop_signal_sets_a_flag_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # repeated SIGTERM: only counted
        assert stop.count == 2
        stop.reset()
        assert not stop.requested and stop.signal_name is None
    assert signal.getsignal(signal.SIGTERM) is before


def test_second_sigint_raises_keyboard_interrupt() -> None:
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_stop_signal_outside_the_main_thread_is_refused() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with StopSignal():
                pass
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors and "main thread" in str(errors[0])


def test_stop_signal_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="SIGNOPE"):
        StopSignal(signals=("SIGNOPE",))


def test_the_old_import_paths_still_work_with_a_deprecation_warning() -> None:
    import vsrkit.checkpoint
    import vsrkit.checkpoint.signals

    for module in (vsrkit.checkpoint, vsrkit.checkpoint.signals):
        with pytest.warns(DeprecationWarning, match="moved to vsrkit.loop"):
            assert module.StopSignal is StopSignal
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import vsrkit

        assert vsrkit.StopSignal is StopSignal  # the top-level name is current
