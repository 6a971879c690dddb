"""Which frames the reference hashes: a replay of ``ffmpeg -r 15``'s frame-rate conversion.

``tmk-hash-video`` never resamples time itself: it runs ``ffmpeg -i VIDEO -s 64:64 -an
-pix_fmt rgb24 -r 15 pipe:1`` and hashes every frame ffmpeg writes, numbering them 0, 1, 2...
TMK's own time resampler is not on that path. So the frame choice is ffmpeg 5.1's output
frame-rate conversion (``fftools/ffmpeg.c`` ``do_video_out``, vsync "cfr", or "vscfr" for
files with one stream), whose rules are not "nearest frame to each tick":

- it takes the frame that *arrives* at each output tick, tolerating a drift of 1.1 output
  frames, and its clock starts at 0, so the first frames are all kept: a 30 fps video gives
  source frames 0, 1, 2, 3, then 5, 7, 9... and lags by 1.5 output frames from then on;
- a frame's duration enters the drift test, and it is the packet duration rounded to whole
  output frames (``lrintf``, ties to even) when that is at least 1, else the input frame
  period capped at 1: 30 fps frames last 0.5 output frames, but 29.97 and 25 fps ones 1;
- a late first frame is written ``round(delta)`` times to fill from time 0 (cfr), except
  for single-stream inputs (vscfr); across gaps the previous frame is repeated;
- at end of stream the last frame is repeated the median of the last three previous-frame
  repeat counts (normally 0); a frame needing more than 3.24 million copies is skipped.

``RateConverter`` replays these rules on timestamps alone, so the hasher can skip resizing
the frames ffmpeg drops (half of a 30 fps video). Its choice equals ffmpeg 5.1's on constant
rates from 10 to 60 fps (NTSC included), variable rates with jitter, gaps and slowdowns,
audio+video files and late-starting video in MKV and MPEG-TS (checked frame by frame against
ffmpeg on clips whose frames carry unique grey levels).
"""

from __future__ import annotations

import math
import struct

__all__ = ["RateConverter"]

_FLOAT32 = struct.Struct("<f")


def _lrintf(value: float) -> int:
    """C ``lrintf``: round to nearest, ties to even, after narrowing to float32."""
    clamped = min(max(value, -(2.0**31)), 2.0**31)
    narrowed: float = _FLOAT32.unpack(_FLOAT32.pack(clamped))[0]
    return round(narrowed)


class RateConverter:
    """ffmpeg 5.1's output frame-rate conversion, for one stream, on timestamps alone.

    For each input frame with exact time ``x`` (in output frames, with 16 extra bits of
    precision and a 1/2^17 nudge off ties, as ``adjust_frame_pts_to_encoder_tb`` computes
    it) and duration ``d``, with ``next`` the output clock: ``delta0 = x - next``,
    ``delta = delta0 + d``; a frame straddling ``next`` is clipped to start there; it is
    dropped if ``delta < -1.1``, written ``lrintf(delta)`` times if ``delta > 1.1`` (the first
    ``lrintf(delta0 - 0.6)`` of those being the previous frame when it is late), else once.
    """

    #: ffmpeg refuses to duplicate a frame more than ``dts_error_threshold * 30`` times.
    MAX_COPIES = 3600 * 30 * 30

    def __init__(
        self,
        fps: int,
        stream_frame_rate: float | None,
        *,
        single_stream: bool,
        start_known: bool = True,
    ) -> None:
        self.fps = fps
        self.single_stream = single_stream
        default = fps / stream_frame_rate if stream_frame_rate and stream_frame_rate > 0 else 0.0
        if start_known:
            default = min(default, 1.0)
        self.default_duration = default
        self.extra_bits = min(max(29 - (fps.bit_length() - 1), 0), 16)
        self.next_pts = 0
        self.frames_out = 0
        self.history = [0, 0, 0]
        self.last_dropped = False
        self.have_last = False

    def exact_pts(self, timestamp: float) -> float:
        """Input time in output frames, as ffmpeg computes it (absurd times stay finite)."""
        unit = 1 << self.extra_bits
        scaled = min(max(timestamp * self.fps * unit, -(2.0**62)), 2.0**62)
        ticks = math.floor(abs(scaled) + 0.5) * (1 if scaled >= 0 else -1)
        value = ticks / unit
        return value + (1.0 if value > 0 else -1.0) / (1 << 17)

    def duration(self, seconds: float | None) -> float:
        if seconds is not None and seconds > 0 and math.isfinite(seconds):
            whole = _lrintf(seconds * self.fps)
            if whole > 0:
                return float(whole)
        return self.default_duration

    def copy(self) -> RateConverter:
        """An independent copy (to ask what a frame would do without doing it)."""
        twin = RateConverter.__new__(RateConverter)
        twin.__dict__.update(self.__dict__)
        twin.history = list(self.history)
        return twin

    def push(self, timestamp: float, duration_seconds: float | None) -> tuple[int, int, bool]:
        """For one input frame: (copies of the previous frame, copies of this one, whether
        this one becomes the frame a later gap repeats)."""
        sync = self.exact_pts(timestamp)
        duration = self.duration(duration_seconds)
        delta0 = sync - self.next_pts
        delta = delta0 + duration
        copies, previous = 1, 0
        if delta0 < 0 < delta:
            sync = float(self.next_pts)
            duration += delta0
            delta0 = 0.0
        if self.single_stream and self.frames_out == 0 and delta0 >= 0.5:
            delta, delta0 = duration, 0.0
            self.next_pts = round(sync)
        if delta < -1.1:
            copies = 0
        elif delta > 1.1:
            copies = _lrintf(delta)
            if delta0 > 1.1:
                previous = _lrintf(delta0 - 0.6)
        previous = min(previous, copies)
        self.history = [previous, *self.history[:2]]
        duplicated = copies > (1 if previous and self.last_dropped else 0) + (copies > previous)
        if duplicated and copies > self.MAX_COPIES:
            # "frame duplication too large, skipping": written nowhere, not even kept as the
            # frame to repeat later.
            return 0, 0, False
        self.last_dropped = copies == previous
        if not self.have_last:
            previous = 0
        self.have_last = True
        self.next_pts += copies
        self.frames_out += copies
        return previous, copies - previous, True

    def flush(self) -> int:
        """Copies of the last frame written at end of stream."""
        copies = sorted(self.history)[1]
        if not self.have_last:
            return 0
        self.next_pts += copies
        self.frames_out += copies
        return copies
