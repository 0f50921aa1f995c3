"""Settings hold paths as strings (gridd/config.py), spelled as pathlib spells them: the paths messages
show, and the files opened, are the ones they were when the settings held Paths."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridd.config import BrokerConfig, broker_data_dir, default_config_path, default_data_dir, load_config, spelled
from gridd.protocol.errors import ConfigError


@given(st.lists(st.sampled_from(["", "/", "//", "///", ".", "..", "a", "b.c", " "]), max_size=8).map("".join))
def test_a_path_is_spelled_as_pathlib_spells_it(path: str) -> None:
    assert spelled(path) == str(PurePosixPath(path))


def test_the_default_paths_are_spelled_as_pathlib_joined_them() -> None:
    environ = {"XDG_DATA_HOME": "/d//x/./", "XDG_CONFIG_HOME": "c/", "HOME": "/h"}
    assert default_data_dir(environ) == str(Path("/d//x/./") / "gridd")
    assert default_config_path(environ) == str(Path("c/") / "gridd" / "gridd.toml")
    assert default_data_dir({"HOME": "/h/"}) == "/h/.local/share/gridd"
    assert broker_data_dir(BrokerConfig(data_dir=""), {}) == "."  # as Path("") was: the working directory


def test_a_missing_config_file_is_named_as_pathlib_spells_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^config file {tmp_path}/nosuch.toml does not exist$"):
        load_config(f"{tmp_path}//./nosuch.toml/", {}, {})


def test_a_config_file_that_is_a_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^cannot read config file {tmp_path}: .*Is a directory: '{tmp_path}'$"):
        load_config(f"{tmp_path}/", {}, {})


def test_a_bad_broker_section_still_fails_every_command(tmp_path: Path) -> None:
    toml = tmp_path / "gridd.toml"
    toml.write_text("[broker]\ndata_dir = 7\n")
    with pytest.raises(ConfigError, match=r"bad setting: Expected `str \| null`, got `int` - at `\$.broker.data_dir`"):
        load_config(str(toml), {}, {})
