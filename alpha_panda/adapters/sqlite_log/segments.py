"""The segment codec of the SQLite log (``_SegmentCodec``): how a partition's records of one
write are packed into a row's bytes (msgpack, zstd-compressed, with the shipped dictionary
when small) and read back, and how the journal's processed ids are stored.

Apart from the storage (``storage``): it is the bytes, not the file; the migration of old
files and the dictionary's training script pack segments with it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import zstandard

from alpha_panda.adapters.sqlite_log import dictionary
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.stream.log import Headers

_Entry = tuple[bytes | None, bytes, Headers]
_encode_segment = msgspec.msgpack.Encoder().encode
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"  # a zstd frame; msgpack arrays start 0x9_/0xdc/0xdd
_COMPRESS_FROM: Final = 1024  # bytes: shorter journal rows are stored as they are
# Segments from 64 bytes (smaller: stored as they are) to 16 KiB (a live feed's few
# ticks, an order, a fill) take the dictionary; bigger ones (a replay's batches) are
# big enough for zstd alone.
_DICT_FROM: Final = 64
_DICT_BELOW: Final = 16 * 1024
_decode_segment = msgspec.msgpack.Decoder(list[tuple[bytes | None, bytes,
                                                     tuple[tuple[str, bytes], ...]]]).decode
_decode_headers = msgspec.msgpack.Decoder(tuple[tuple[str, bytes], ...]).decode


class _SegmentCodec:
    """Segment bytes: msgpack, zstd-compressed from ``_DICT_FROM`` bytes on, with the
    shipped dictionary (``dictionary``) below ``_DICT_BELOW``. Holds its own (not
    thread-safe) zstd contexts: one per storage."""

    def __init__(self) -> None:
        # Level -1, one of zstd's fast levels: a replay's ticks shrink 11-fold (15-fold at
        # level 1: 38 bytes a tick stored instead of 28), for about 3% fewer instructions
        # per tick in the whole pipeline (callgrind, 20k ticks; runs vary by 2%). Frames
        # of either level read back alike.
        self._compress = zstandard.ZstdCompressor(level=-1).compress
        self._decompress = zstandard.ZstdDecompressor().decompress
        # Small segments (a live feed's few ticks, an order, a fill): with the dictionary,
        # 5-6 fold smaller for about 3 us each. Every frame names its dictionary (0: none).
        self._by_dict: dict[int, Callable[[bytes], bytes]] = {0: self._decompress}
        for dict_id, d in dictionary.dictionaries().items():
            self._by_dict[dict_id] = zstandard.ZstdDecompressor(dict_data=d).decompress
        latest = dictionary.current()
        self._compress_small = (None if latest is None else
                                zstandard.ZstdCompressor(level=1, dict_data=latest).compress)

    def pack(self, entries: Sequence[_Entry]) -> bytes:
        data = _encode_segment(entries)
        n = len(data)
        compress_small = self._compress_small
        if compress_small is not None and _DICT_FROM <= n < _DICT_BELOW:
            small = compress_small(data)
            return small if len(small) < n else data
        return self._compress(data) if n >= _COMPRESS_FROM else data

    def unpack(self, data: bytes) -> list[_Entry]:
        if data[:4] == _ZSTD_MAGIC:
            dict_id = zstandard.get_frame_parameters(data).dict_id
            decompress = self._by_dict.get(dict_id)
            if decompress is None:
                raise ConfigurationError(
                    f"a log segment needs zstd dictionary {dict_id:08x}, which this version "
                    "of Alpha Panda does not have: was the log written by a newer one?")
            data = decompress(data)
        return _decode_segment(data)

    def pack_ids(self, joined: str) -> str | bytes:
        """A journal row's ids: as text when short, else zstd-compressed bytes (a batch of
        tick ids shrinks 40-fold: writing it raw cost a replay 3% of its speed)."""
        return self._compress(joined.encode()) if len(joined) >= _COMPRESS_FROM else joined

    def unpack_ids(self, stored: str | bytes) -> list[str]:
        if isinstance(stored, bytes):
            stored = self._decompress(stored).decode()
        return stored.split("\n")
