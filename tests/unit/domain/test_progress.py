"""A rank's startup progress: its report survives the file, and reads as one status line."""

from __future__ import annotations

from llm_launch.domain.progress import Phase, StartupProgress, WeightsProgress

GB = 1_000_000_000


def test_a_fetch_reads_as_percent_sizes_and_rate() -> None:
    weights = WeightsProgress(done_bytes=290 * GB, total_bytes=700 * GB, rate_bytes_per_s=1.1 * GB)
    report = StartupProgress(
        rank=0, phase=Phase.DOWNLOADING_WEIGHTS, updated_at=1.0, weights=weights
    )
    assert report.describe() == "downloading weights 41% (290/700 GB, 1.1 GB/s)"


def test_a_fetch_of_unknown_size_reads_as_bytes_so_far() -> None:
    weights = WeightsProgress(done_bytes=3 * GB, total_bytes=None, rate_bytes_per_s=0.5 * GB)
    report = StartupProgress(
        rank=1, phase=Phase.DOWNLOADING_WEIGHTS, updated_at=1.0, weights=weights
    )
    assert report.describe() == "downloading weights (3.0 GB, 0.5 GB/s)"


def test_a_phase_with_a_detail_names_it() -> None:
    report = StartupProgress(
        rank=0, phase=Phase.WAITING_FOR_WORKERS, updated_at=1.0, detail="1 of 2"
    )
    assert report.describe() == "waiting for the workers: 1 of 2"


def test_a_report_survives_its_json() -> None:
    weights = WeightsProgress(done_bytes=1, total_bytes=2, rate_bytes_per_s=3.0)
    report = StartupProgress(
        rank=2, phase=Phase.DOWNLOADING_WEIGHTS, updated_at=5.5, weights=weights
    )
    assert StartupProgress.from_json(report.to_json()) == report


def test_a_torn_or_foreign_file_is_no_report() -> None:
    assert StartupProgress.from_json('{"rank": 0, "pha') is None
    assert StartupProgress.from_json('{"rank": 0, "phase": "dancing", "updated_at": 1}') is None
    assert StartupProgress.from_json("[]") is None
