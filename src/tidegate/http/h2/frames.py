"""h2's frame buffer with two bounds it lacks.

- A frame longer than the negotiated SETTINGS_MAX_FRAME_SIZE is refused as soon as its 9-byte
  header arrives; h2's own buffer first waits for (and holds) the whole announced length, up to
  16 MiB per connection.
- A header block (HEADERS and its CONTINUATION frames) may not grow past `header_block_limit`
  bytes; h2 counts only frames (64 of them, a megabyte), and a CONTINUATION flood
  (CVE-2024-27316) is cheapest in bytes.

Both raise h2's own errors, so h2 answers them with GOAWAY like any other protocol error. The
subclass reaches into h2's FrameBuffer (`_data`, `_headers_buffer`): pinned by h2 >= 4.1, < 5.
"""

from __future__ import annotations

from h2.errors import ErrorCodes
from h2.exceptions import FrameTooLargeError, ProtocolError
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import Frame


class HeaderBlockTooLarge(ProtocolError):
    error_code = ErrorCodes.ENHANCE_YOUR_CALM


class BoundedFrameBuffer(FrameBuffer):
    def __init__(self, header_block_limit: int) -> None:
        super().__init__(server=True)
        self.header_block_limit = header_block_limit

    def __next__(self) -> Frame:
        if len(self._data) >= 9:
            _, length = Frame.parse_frame_header(memoryview(self._data[:9]))
            if length > self.max_frame_size:
                msg = f"frame of {length} bytes announced, max {self.max_frame_size}"
                raise FrameTooLargeError(msg)
        return super().__next__()

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        out = super()._update_header_buffer(f)
        if self._headers_buffer:
            held = sum(len(x.data) for x in self._headers_buffer)
            if held > self.header_block_limit:
                raise HeaderBlockTooLarge(f"header block over {self.header_block_limit} bytes")
        return out
