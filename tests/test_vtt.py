"""The visual Turing test: the page in a real headless Chromium, the key, and the scoring."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image
from tiny_gan import save_tiny_checkpoint

from liver_gan.cli.vtt import main
from liver_gan.errors import LiverGanError
from liver_gan.vtt.page import decode_truth, encode_truth, write_visual_turing_test
from liver_gan.vtt.scoring import clopper_pearson, load_answers, load_key, score_answers

# CI sets this so that a missing browser fails instead of skipping.
REQUIRE_BROWSER = os.environ.get("LIVER_GAN_REQUIRE_BROWSER") == "1"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def _constant_slices(values: list[int]) -> torch.Tensor:
    """uint8 (N, 1, 16, 16) slices, each filled with its own value, so a decoded PNG names its source."""
    return torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 16, 16).contiguous()


REAL_VALUES = [10, 20, 30, 40, 50]
FAKE_VALUES = [200, 210, 220, 230, 240]


@pytest.fixture
def vtt(tmp_path: Path):
    return write_visual_turing_test(
        _constant_slices(REAL_VALUES), _constant_slices(FAKE_VALUES), tmp_path / "vtt", seed=3, display_size=256
    )


def _page_images(page: Path) -> list[dict]:
    html = page.read_text()
    start = html.index('<script id="vtt-data" type="application/json">') + len('<script id="vtt-data" type="application/json">')
    return json.loads(html[start : html.index("</script>", start)])["images"]


def _pixel_value(data_uri: str) -> int:
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))))
    assert image.shape == (16, 16) and (image == image[0, 0]).all()
    return int(image[0, 0])


def _write_answers(path: Path, test_id: str, answers: dict[str, str], reader: str = "R1") -> Path:
    path.write_text(json.dumps({"test_id": test_id, "reader": reader, "answers": answers}))
    return path


def test_the_key_round_trips_and_the_page_shows_no_truth(vtt) -> None:
    salt, encoded = encode_truth([True, False, True])
    assert decode_truth(salt, encoded) == [True, False, True]
    images = _page_images(vtt.page)
    assert [image["id"] for image in images] == [f"slice-{index:03d}" for index in range(1, 11)]
    assert all(set(image) == {"id", "src"} for image in images)
    is_fake_on_page = [_pixel_value(image["src"]) in FAKE_VALUES for image in images]
    assert is_fake_on_page != sorted(is_fake_on_page, reverse=True)  # shuffled, not reals-then-fakes
    test_id, truth = load_key(vtt.key)
    assert [truth[image["id"]] for image in images] == is_fake_on_page
    key = json.loads(vtt.key.read_text())
    assert key["encoded_truth"] not in vtt.page.read_text()
    assert test_id in vtt.page.read_text()


def test_clopper_pearson_bounds_are_the_exact_binomial_tails() -> None:
    low, high = clopper_pearson(8, 10)
    # By definition P(X >= 8 | p = low) = P(X <= 8 | p = high) = 0.025 for X ~ Binomial(10, p).
    upper_tail = sum(math.comb(10, k) * low**k * (1 - low) ** (10 - k) for k in range(8, 11))
    lower_tail = sum(math.comb(10, k) * high**k * (1 - high) ** (10 - k) for k in range(0, 9))
    assert upper_tail == pytest.approx(0.025) and lower_tail == pytest.approx(0.025)
    assert (low, high) == pytest.approx((0.4439, 0.9748), abs=1e-4)
    assert clopper_pearson(20, 20) == pytest.approx((0.025 ** (1 / 20), 1.0))


def test_scoring_a_known_answer_file(vtt, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    test_id, truth = load_key(vtt.key)
    fakes = [slice_id for slice_id, is_fake in truth.items() if is_fake]
    reals = [slice_id for slice_id, is_fake in truth.items() if not is_fake]
    # 4 of 5 synthetic slices caught, 4 of 5 real slices cleared: 8 of 10 correct.
    answers = {**{s: "fake" for s in fakes[:4]}, fakes[4]: "real", **{s: "real" for s in reals[:4]}, reals[4]: "fake"}
    path = _write_answers(tmp_path / "answers.json", test_id, answers)
    called_fake, reader = load_answers(path, test_id, set(truth))
    score = score_answers(truth, called_fake)
    assert reader == "R1"
    assert score["correct"]["successes"] == 8 and score["correct"]["rate"] == pytest.approx(0.8)
    assert (score["correct"]["ci_low"], score["correct"]["ci_high"]) == pytest.approx((0.4439, 0.9748), abs=1e-4)
    assert score["sensitivity"]["rate"] == pytest.approx(0.8) and score["specificity"]["rate"] == pytest.approx(0.8)
    assert score["sensitivity"]["ci_high"] == pytest.approx(0.975 ** (1 / 5))  # 1 - p^5 = 0.025
    assert score["p_value_vs_chance"] == pytest.approx(2 * (45 + 10 + 1) / 1024)
    assert not score["differs_from_chance"]

    main(["score", str(path), "--key", str(vtt.key), "--json", str(tmp_path / "score.json")])
    printed = capsys.readouterr().out
    assert "8/10 = 80.0% (CI 44.4%-97.5%)" in printed
    assert "does not differ from chance" in printed
    assert json.loads((tmp_path / "score.json").read_text())["correct"]["successes"] == 8


def test_a_partial_answer_file_is_scored_on_what_was_answered(vtt, tmp_path: Path) -> None:
    test_id, truth = load_key(vtt.key)
    answered = {slice_id: "fake" if is_fake else "real" for slice_id, is_fake in list(truth.items())[:6]}
    called_fake, _ = load_answers(_write_answers(tmp_path / "a.json", test_id, answered), test_id, set(truth))
    score = score_answers(truth, called_fake)
    assert (score["answered"], score["num_slices"], score["correct"]["rate"]) == (6, 10, 1.0)


def test_answers_for_another_test_or_with_bad_values_are_refused(vtt, tmp_path: Path) -> None:
    test_id, truth = load_key(vtt.key)
    with pytest.raises(LiverGanError, match="matching key"):
        load_answers(_write_answers(tmp_path / "a.json", "0" * 16, {}), test_id, set(truth))
    with pytest.raises(LiverGanError, match="'real' or 'fake'"):
        load_answers(_write_answers(tmp_path / "b.json", test_id, {"slice-001": "maybe"}), test_id, set(truth))
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(tmp_path / "missing.json"), "--key", str(vtt.key)])
    assert exit_info.value.code == 2


def test_real_and_synthetic_slices_of_different_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LiverGanError, match="differ in size"):
        write_visual_turing_test(torch.zeros(2, 1, 16, 16, dtype=torch.uint8), torch.zeros(2, 1, 32, 32, dtype=torch.uint8), tmp_path, seed=0)


def test_make_samples_a_run_against_its_validation_split(
    tmp_path: Path, compose_config: Callable[..., DictConfig], tiny_phantom: list[str], capsys: pytest.CaptureFixture
) -> None:
    overrides = tiny_phantom + ["model.conditional=true", "dataset.subset=all"]
    run = save_tiny_checkpoint(compose_config, tmp_path / "gan", overrides)
    main(["make", "--generator", str(run), "--num", "6", "--out", str(tmp_path / "vtt"), "--device", "cpu"])
    assert "vtt.html" in capsys.readouterr().out
    key = json.loads((tmp_path / "vtt" / "key.json").read_text())
    assert (key["num_real"], key["num_fake"]) == (3, 3)
    images = _page_images(tmp_path / "vtt" / "vtt.html")
    assert len(images) == 6
    assert all(Image.open(io.BytesIO(base64.b64decode(i["src"].split(",", 1)[1]))).size == (32, 32) for i in images)


def _write_slice_folders(tmp_path: Path) -> None:
    """tmp_path/real and tmp_path/fake: one constant 16x16 PNG per value."""
    for folder, values in (("real", REAL_VALUES), ("fake", FAKE_VALUES)):
        (tmp_path / folder).mkdir()
        for index, value in enumerate(values):
            Image.fromarray(np.full((16, 16), value, np.uint8)).save(tmp_path / folder / f"{index}.png")


def test_make_from_folders(tmp_path: Path) -> None:
    _write_slice_folders(tmp_path)
    main(["make", "--fake-dir", str(tmp_path / "fake"), "--real-dir", str(tmp_path / "real"), "--num", "8", "--out", str(tmp_path / "vtt")])
    _, truth = load_key(tmp_path / "vtt" / "key.json")
    values = {image["id"]: _pixel_value(image["src"]) for image in _page_images(tmp_path / "vtt" / "vtt.html")}
    assert all((values[slice_id] in FAKE_VALUES) == is_fake for slice_id, is_fake in truth.items())
    with pytest.raises(SystemExit):
        main(["make", "--fake-dir", str(tmp_path / "fake"), "--real-dir", str(tmp_path / "real"), "--num", "20", "--out", str(tmp_path / "x")])


def test_two_tests_made_in_the_same_second_keep_their_own_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_slice_folders(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda pattern: "2024-05-01_12-00-00")
    for _ in range(2):
        main(["make", "--fake-dir", "fake", "--real-dir", "real", "--num", "8"])
    keys = [tmp_path / "outputs" / "vtt" / name / "key.json" for name in ("2024-05-01_12-00-00", "2024-05-01_12-00-00-2")]
    assert load_key(keys[0])[0] != load_key(keys[1])[0]  # two tests, two keys


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    """A headless Chromium driven by selenium, downloading into tmp_path/downloads."""
    browser, driver_binary = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        browser = None
    if browser is None or driver_binary is None:
        message = "needs Debian's chromium and chromium-driver and the selenium package"
        if REQUIRE_BROWSER:
            pytest.fail(message)
        pytest.skip(message)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_binary))
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver, downloads
    finally:
        driver.quit()


def test_the_page_works_in_headless_chromium(vtt, chromium, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from selenium.webdriver.common.by import By

    driver, downloads = chromium
    driver.get(vtt.page.resolve().as_uri())
    progress = driver.find_element(By.ID, "progress")
    assert progress.text == "0 of 10 answered"
    images = driver.find_elements(By.CSS_SELECTOR, ".item img")
    assert len(images) == 10
    assert images[0].size["width"] == 256  # shown at the requested size, not the 16-pixel original
    assert driver.execute_script("return arguments[0].naturalWidth", images[0]) == 16

    fake_button = driver.find_element(By.CSS_SELECTOR, "#slice-001 button[data-answer=fake]")
    fake_button.click()
    driver.find_element(By.CSS_SELECTOR, "#slice-002 button[data-answer=real]").click()
    assert progress.text == "2 of 10 answered"
    assert "chosen" in fake_button.get_attribute("class")
    driver.find_element(By.ID, "reader").send_keys("Dr. Test")
    assert driver.execute_script("return window.vttAnswers().answers") == {"slice-001": "fake", "slice-002": "real"}

    driver.find_element(By.ID, "export").click()
    exported = downloads / "answers.json"
    for _ in range(100):
        if exported.exists():
            break
        time.sleep(0.1)
    answers = json.loads(exported.read_text())
    assert answers["answers"] == {"slice-001": "fake", "slice-002": "real"}
    assert answers["reader"] == "Dr. Test"
    assert answers["test_id"] == load_key(vtt.key)[0]

    main(["score", str(exported), "--key", str(vtt.key)])
    printed = capsys.readouterr().out
    assert "reader: Dr. Test; answered 2 of 10 slices" in printed
