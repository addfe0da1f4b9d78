"""bench/nvjpeg_hw.py's layout of a decoded batch: planar RGB images packed one after another."""

from bench.nvjpeg_hw import destinations, planar_layout


def test_planar_layout_packs_images_one_after_another():
    assert planar_layout([(2, 3), (4, 5), (1, 1)]) == ([0, 18, 78], 81)
    assert planar_layout([]) == ([], 0)


def test_destinations_point_each_plane_at_its_place_with_the_width_as_pitch():
    shapes = [(2, 3), (4, 5)]
    offsets, _ = planar_layout(shapes)
    images = destinations(1000, shapes, offsets)
    assert [images[0].channel[c] for c in range(3)] == [1000, 1006, 1012]
    assert [images[1].channel[c] for c in range(3)] == [1018, 1038, 1058]
    assert [images[1].pitch[c] for c in range(3)] == [5, 5, 5]
    assert images[0].channel[3] is None  # the fourth plane is unused
