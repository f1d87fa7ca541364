"""Unit tier: the one public-or-build rule the base, node and registry images share (harness.imagesource)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from harness._errors import ConfigError, HarnessError, PreflightError
from harness.imagesource import Choice, choose

pytestmark = pytest.mark.unit

PUBLIC = "example.org/thing:1@sha256:" + "a" * 64
LOCAL = "local/thing:abc"
FIX = "--thing-mode local builds one"


@dataclass
class Fakes:
    """The image-specific parts, recording what the rule asked of them."""

    pull: tuple[str | None, str] = ("pulled", "")
    calls: list[str] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)

    def obtain(self, ref: str) -> tuple[str | None, str]:
        self.calls.append(f"obtain {ref}")
        return self.pull

    def build(self) -> str:
        self.calls.append("build")
        return LOCAL

    def run(self, mode: str | None, override: str | None = None, **extra: object) -> Choice:
        return choose(what="thing image", mode=mode, override=override, public=PUBLIC, obtain_public=self.obtain,
                      build_local=self.build, log=self.logged.append, fix=FIX, local_reason="built here",
                      override_reason="--thing-image given", **extra)


@pytest.mark.parametrize("mode", ["auto", "public", "local", None])
def test_an_override_wins_in_every_mode_and_nothing_is_pulled_or_built(mode: str | None) -> None:
    f = Fakes()
    assert f.run(mode, "mine:1") == Choice("mine:1", "override", "--thing-image given")
    assert f.calls == []


def test_the_override_check_is_asked_and_its_refusal_stands() -> None:
    f = Fakes()
    checked: list[str] = []

    def refuse(ref: str) -> None:
        checked.append(ref)
        raise PreflightError(f"{ref} is not here")

    with pytest.raises(PreflightError, match="mine:1 is not here"):
        f.run("auto", "mine:1", check_override=refuse)
    assert checked == ["mine:1"]
    assert f.calls == []


@pytest.mark.parametrize("mode", ["auto", None, ""])
def test_auto_takes_the_public_image_when_it_can_be_had(mode: str | None) -> None:
    f = Fakes(pull=("present", ""))
    assert f.run(mode) == Choice(PUBLIC, "public", "present")
    assert f.calls == [f"obtain {PUBLIC}"]
    assert f.logged == []


def test_auto_falls_back_to_the_build_and_says_why() -> None:
    f = Fakes(pull=(None, "dial tcp: no route to host"))
    assert f.run("auto") == Choice(LOCAL, "local", "built here")
    assert f.calls == [f"obtain {PUBLIC}", "build"]
    assert len(f.logged) == 1
    assert f.logged[0].startswith(f"thing image: {PUBLIC} cannot be pulled (dial tcp: no route to host)")


def test_public_mode_that_cannot_pull_raises_naming_the_fix_and_builds_nothing() -> None:
    f = Fakes(pull=(None, "denied"))
    with pytest.raises(HarnessError) as caught:
        f.run("public")
    assert str(caught.value) == f"cannot pull {PUBLIC}: denied\nfix: {FIX}"
    assert f.calls == [f"obtain {PUBLIC}"]


def test_local_mode_builds_without_trying_the_public_image() -> None:
    f = Fakes()
    assert f.run("local") == Choice(LOCAL, "local", "built here")
    assert f.calls == ["build"]


def test_an_unusable_public_image_is_never_pulled_auto_builds_and_says_why() -> None:
    f = Fakes()
    assert f.run("auto", public_unusable="cannot run on this cgroup v1 host: its kubelet exits").source == "local"
    assert f.calls == ["build"]
    assert f.logged == [f"thing image: not using {PUBLIC} (cannot run on this cgroup v1 host: its kubelet exits); "
                        "using the registry-less build"]


def test_an_unusable_public_image_in_public_mode_raises_naming_why_and_the_fix() -> None:
    f = Fakes()
    with pytest.raises(PreflightError) as caught:
        f.run("public", public_unusable="cannot run on this cgroup v1 host: its kubelet exits")
    assert str(caught.value) == (f"thing image {PUBLIC}: cannot run on this cgroup v1 host: its kubelet exits\n"
                                 f"fix: {FIX}")
    assert f.calls == []


def test_an_unusable_public_image_does_not_matter_in_local_mode_or_beside_an_override() -> None:
    f = Fakes()
    assert f.run("local", public_unusable="no").source == "local"
    assert f.run("public", "mine:1", public_unusable="no").source == "override"
    assert f.calls == ["build"]


@pytest.mark.parametrize(("setting", "named"), [(None, "thing image mode"), ("$THING_MODE", "$THING_MODE")])
def test_a_bad_mode_is_refused_naming_the_setting_and_the_choices(setting: str | None, named: str) -> None:
    f = Fakes()
    with pytest.raises(ConfigError) as caught:
        f.run("publik", mode_setting=setting)
    assert str(caught.value) == f"{named} must be auto, public or local, not 'publik'"
    assert f.calls == []


def _already(choice: Choice | None, calls: list[str]) -> Callable[[], Choice | None]:
    def look() -> Choice | None:
        calls.append("already")
        return choice

    return look


def test_auto_takes_what_is_already_here_before_any_pull() -> None:
    f = Fakes()
    earlier = Choice("local/thing:earlier", "local", "built earlier")
    assert f.run("auto", already_local=_already(earlier, f.calls)) == earlier
    assert f.calls == ["already"]


def test_auto_pulls_when_nothing_is_already_here_and_only_auto_looks() -> None:
    f = Fakes()
    assert f.run("auto", already_local=_already(None, f.calls)).source == "public"
    assert f.calls == ["already", f"obtain {PUBLIC}"]
    f.calls.clear()
    f.run("public", already_local=_already(Choice("x", "local", "x"), f.calls))
    f.run("local", already_local=_already(Choice("x", "local", "x"), f.calls))
    assert f.calls == [f"obtain {PUBLIC}", "build"]


def test_what_is_already_here_is_not_asked_when_the_public_image_is_unusable() -> None:
    f = Fakes()
    assert f.run("auto", public_unusable="no", already_local=_already(Choice(PUBLIC, "public", "present"),
                                                                      f.calls)).source == "local"
    assert f.calls == ["build"]
