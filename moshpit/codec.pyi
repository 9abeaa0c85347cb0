"""Types of the compiled codec (codec.pyx): the datagram header and the frames."""
from collections.abc import Iterable
VERSION: int
CLIENT_TO_SERVER: int
SERVER_TO_CLIENT: int
HEADER_SIZE: int
AEAD_TAG_SIZE: int
MAC_SIZE: int
OVERHEAD: int
MAX_DATAGRAM_SIZE: int
MAX_PAYLOAD_SIZE: int
MIN_DATAGRAM_SIZE: int
MAX_SEQ: int
FRAME_HEADER_SIZE: int
FRAME_DATA: int
FRAME_ACK: int
FRAME_NAK: int
FRAME_PING: int
FRAME_RESIZE: int
FRAME_SCREEN: int
FRAME_STATE_ACK: int
FRAME_REPAINT: int
FRAME_CLOSE: int
FRAME_GONE: int
FRAME_PADDING: int
FRAME_OSN: int
FRAME_ECHO_ACK: int
FRAME_SKIP: int
FRAME_STREAM_OPEN: int
FRAME_STREAM_DATA: int
FRAME_STREAM_WINDOW: int
FRAME_STREAM_FIN: int
FRAME_STREAM_RESET: int
FRAME_FORWARD: int
FRAME_PATH_PROBE: int
FRAME_NAMES: dict[int, str]

def frame_body_ok(frame_type: int, length: int) -> bool: ...
def encode_header(out: bytearray | memoryview, direction: int, conn_id: int, seq: int) -> int: ...
def header(direction: int, conn_id: int, seq: int) -> bytes: ...
def decode_header(datagram: bytes | bytearray | memoryview) -> tuple[int, int, int]: ...
def encode_frame(out: bytearray | memoryview, pos: int, frame_type: int,
                 body: bytes | bytearray | memoryview) -> int: ...
def encode_frames(frames: Iterable[tuple[int, bytes | bytearray]]) -> bytes: ...
def decode_frames(payload: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]: ...
