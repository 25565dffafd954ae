"""The draft preview stream, read back from its files: playlists with m3u8, every segment decoded with PyAV."""

import io

import av
import cv2
import m3u8
import numpy as np
import pytest
from scipy.signal import correlate

from microdrama_assets.media.audio_mix import SAMPLE_RATE, place_lines
from microdrama_assets.media.captions import measure_caption_legibility, render_caption, safe_area
from microdrama_assets.media.hls import (INIT_SEGMENT, MEDIA_PLAYLIST, fragment_decode_times, media_timescale,
                                         nal_length_size)
from microdrama_assets.media.manifest import FPS, EpisodeManifest
from microdrama_assets.media.planner import plan_episode
from microdrama_assets.media.preview import PREVIEW_HEIGHT, PREVIEW_WIDTH, PreviewError, build_preview
from microdrama_assets.media.render import render_keyframe
from microdrama_assets.media.speech import synthesize
from microdrama_assets.media.storyboard import plan_keyframes

LOGLINE = "A barista discovers a mysterious locket that signals danger."
H264_IDR = 5


def planned_manifest() -> EpisodeManifest:
    """Three planned shots (about 9.5 s); the second made static, so the draft's own drift is covered too."""
    data = plan_episode(LOGLINE, "preview-test", shots=3, seed=0, target_duration_s=6.0).model_dump(mode="json")
    data["shots"][1]["camera"] = "static"
    return EpisodeManifest.model_validate(data)


@pytest.fixture(scope="module")
def preview(tmp_path_factory):
    """The preview built once, with the playlist as it stood each time a segment was announced."""
    manifest = planned_manifest()
    out_dir = tmp_path_factory.mktemp("preview")
    announced = []

    def on_segment(segment):
        announced.append((segment, (out_dir / MEDIA_PLAYLIST).read_text(encoding="utf-8")))

    result = build_preview(manifest, out_dir, on_segment)
    return manifest, out_dir, result, announced


def decoded(out_dir, uris: list[str], kind: str) -> list:
    """The frames of ``kind`` a player gets from the init segment followed by ``uris``."""
    data = (out_dir / INIT_SEGMENT).read_bytes() + b"".join((out_dir / uri).read_bytes() for uri in uris)
    with av.open(io.BytesIO(data)) as container:
        return list(container.decode(**{kind: 0}))


def first_picture_nal_type(out_dir, uri: str) -> int:
    """NAL unit type of the first picture in a segment's first video sample."""
    data = (out_dir / INIT_SEGMENT).read_bytes() + (out_dir / uri).read_bytes()
    with av.open(io.BytesIO(data)) as container:
        packet = next(p for p in container.demux(video=0) if p.size)
        payload = bytes(packet)
    length_size = nal_length_size(out_dir / INIT_SEGMENT)
    offset = 0
    while offset < len(payload):
        size = int.from_bytes(payload[offset:offset + length_size], "big")
        nal_type = payload[offset + length_size] & 0x1F
        if nal_type <= 5:  # a coded slice: the picture itself, past any SEI or parameter sets
            return nal_type
        offset += length_size + size
    raise AssertionError(f"{uri}: no picture in the first sample")


def placed_lines(manifest: EpisodeManifest, shot) -> list[tuple[float, np.ndarray]]:
    """(start in the shot, samples) of each of the shot's lines, where the full pipeline puts them."""
    speeches = [synthesize(line.text, manifest.character(line.speaker).voice) for line in shot.dialogue]
    starts = place_lines(shot.frames, [speech.duration_s for speech in speeches])
    return [(start_s, speech.samples) for start_s, speech in zip(starts, speeches)]


def test_stream_is_h264_360x640_with_audio_lasting_the_episode(preview):
    manifest, out_dir, result, _ = preview
    uris = [segment.uri for segment in result.segments]
    with av.open(str(out_dir / INIT_SEGMENT)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert (video.width, video.height) == (PREVIEW_WIDTH, PREVIEW_HEIGHT) == (360, 640)
    frames = decoded(out_dir, uris, "video")
    assert len(frames) == manifest.total_frames
    assert abs(float(frames[-1].pts * frames[-1].time_base) + 1 / FPS - manifest.duration_s) < 1e-6
    samples = sum(frame.samples for frame in decoded(out_dir, uris, "audio"))
    assert abs(samples / SAMPLE_RATE - manifest.duration_s) < 0.05  # the AAC encoder pads its last frame
    assert result.duration_s == pytest.approx(manifest.duration_s)
    # Low bitrate: about 400 kb/s of video plus the speech.
    total_bytes = sum((out_dir / uri).stat().st_size for uri in uris)
    assert 200_000 < total_bytes * 8 / manifest.duration_s < 700_000


def test_segments_last_1_to_2_s_open_on_an_idr_and_follow_on(preview):
    manifest, out_dir, result, _ = preview
    playlist = m3u8.load(str(result.playlist))
    timescale = media_timescale(out_dir / INIT_SEGMENT)  # the video track's, listed first
    expected_start = 0
    for segment in playlist.segments:
        assert 1.0 <= segment.duration <= 2.0
        frames = decoded(out_dir, [segment.uri], "video")  # decodes on its own, as after a seek
        assert len(frames) == round(segment.duration * FPS)
        assert frames[0].key_frame and first_picture_nal_type(out_dir, segment.uri) == H264_IDR
        video_tfdt, audio_tfdt = fragment_decode_times(out_dir / segment.uri)
        assert video_tfdt == expected_start
        # The segment carries its own sound: it starts within one AAC frame (1024 samples) of the picture.
        assert 0 <= audio_tfdt / SAMPLE_RATE - video_tfdt / timescale < 1024 / SAMPLE_RATE
        expected_start += len(frames) * timescale // FPS
    assert expected_start == manifest.total_frames * timescale // FPS


def test_event_playlist_lists_each_shot_once_it_is_done_and_ends_when_all_are(preview):
    manifest, out_dir, result, announced = preview
    first_shot = manifest.shots[0].id
    first_uris = [segment.uri for segment in result.segments if segment.shot_id == first_shot]
    after_first = m3u8.loads(announced[0][1])
    assert announced[0][0].shot_id == first_shot
    assert after_first.playlist_type == "event" and not after_first.is_endlist
    assert [s.uri for s in after_first.segments] == first_uris
    assert all(s.init_section.uri == INIT_SEGMENT for s in after_first.segments)
    # Each segment is announced once, in order, with the playlist already listing it.
    assert [segment.uri for segment, _ in announced] == [segment.uri for segment in result.segments]
    assert all(segment.uri in text for segment, text in announced)

    final = m3u8.load(str(result.playlist))
    assert final.playlist_type == "event" and final.is_endlist and final.target_duration == 2
    assert [s.uri for s in final.segments] == [s.uri for s in result.segments]
    assert [s.shot_id for s in result.segments] == sorted(s.shot_id for s in result.segments)
    assert {s.shot_id for s in result.segments} == set(manifest.shot_ids)
    assert 0 < result.first_playable_s < result.elapsed_s
    assert not list(out_dir.glob("*.part*")) and not list(out_dir.glob(".*"))


def test_dialogue_is_heard_where_the_full_pipeline_places_it(preview):
    manifest, out_dir, result, _ = preview
    frames = decoded(out_dir, [segment.uri for segment in result.segments], "audio")
    sound = np.concatenate([frame.to_ndarray()[0] for frame in frames])
    window = SAMPLE_RATE // 20
    for shot in manifest.shots:
        (start_s, speech), *_ = placed_lines(manifest, shot)
        line_start = round((manifest.start_frame(shot.id) / FPS + start_s) * SAMPLE_RATE)
        # Silent lead-in (short of the codec's pre-echo), then the line, lagging its placement by no more than a
        # few samples: no encoder priming or timeline drift in between.
        assert np.abs(sound[line_start - SAMPLE_RATE // 5:line_start - window]).max() < 0.01
        heard = sound[line_start - window:line_start + len(speech) + window]
        lag = int(np.argmax(correlate(heard, speech, mode="valid", method="fft"))) - window
        assert abs(lag) <= SAMPLE_RATE // 500, f"shot {shot.id}: speech {lag / SAMPLE_RATE * 1000:+.1f} ms off"


def test_captions_and_watermark_are_burned_in(preview):
    manifest, out_dir, result, _ = preview
    frames = [f.to_ndarray(format="rgb24") for f in decoded(out_dir, [s.uri for s in result.segments], "video")]
    for shot in manifest.shots:
        start = manifest.start_frame(shot.id)
        caption = render_caption(shot.dialogue[0].text, PREVIEW_WIDTH, PREVIEW_HEIGHT, manifest.caption_style.value)
        spoken = start + round((placed_lines(manifest, shot)[0][0] + 0.5) * FPS)
        assert measure_caption_legibility(frames[spoken], caption).contrast > 3.0
        # Before the line (the lead-in) no caption is there to read.
        assert measure_caption_legibility(frames[start], caption).contrast < 2.0
    # "PREVIEW" in white over a dark outline, top-left inside the title-safe area, on every frame.
    area = safe_area(PREVIEW_WIDTH, PREVIEW_HEIGHT)
    corner = np.stack([frame[area.top:area.top + 20, area.left:area.left + 70].max(axis=2) for frame in frames[::15]])
    assert (corner.reshape(len(corner), -1).max(axis=1) > 190).all()
    assert (corner.reshape(len(corner), -1).min(axis=1) < 90).all()


def test_static_shots_drift_and_moving_cameras_move(preview):
    manifest, out_dir, result, _ = preview
    frames = [f.to_ndarray(format="gray") for f in decoded(out_dir, [s.uri for s in result.segments], "video")]
    for shot in manifest.shots:
        first = manifest.start_frame(shot.id)
        last = first + shot.frames - 1
        upper = slice(PREVIEW_HEIGHT // 8, PREVIEW_HEIGHT // 2)  # clear of the watermark and the captions
        change = np.abs(frames[first][upper].astype(float) - frames[last][upper]).mean()
        assert change > 2.0, f"shot {shot.id} ({shot.camera.value}) does not move"


def test_dialogue_that_does_not_fit_its_shot_names_the_shot(tmp_path):
    data = planned_manifest().model_dump(mode="json")
    data["shots"][0]["duration_s"] = 1.0
    data["shots"][0]["dialogue"][0]["text"] = "This line is far too long to be spoken in one second of screen time."
    with pytest.raises(PreviewError, match="shot s01"):
        build_preview(EpisodeManifest.model_validate(data), tmp_path / "preview")
    assert not (tmp_path / "preview").exists()  # it fails before writing anything a player could pick up


def test_draft_keyframes_are_the_full_picture_at_a_smaller_size():
    manifest = planned_manifest()
    shot = manifest.shots[0]
    plan = plan_keyframes(shot, manifest)[0]
    draft = render_keyframe(manifest, shot, plan, size=(450, 800))
    assert draft.image.shape == (800, 450, 3) and draft.background.shape == (800, 450, 3)
    assert all(mask.shape == (800, 450) for mask in draft.masks.values())
    full = cv2.resize(render_keyframe(manifest, shot, plan).image, (450, 800), interpolation=cv2.INTER_AREA)
    assert np.abs(full.astype(float) - draft.image).mean() < 8.0
    with pytest.raises(ValueError, match="positive"):
        render_keyframe(manifest, shot, plan, size=(0, 800))
