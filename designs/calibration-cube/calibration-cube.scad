// 20 mm calibration cube with axis marks.
// SPDX-License-Identifier: CC0-1.0
// Print it, measure each side with calipers and compare against `size`.

size = 20;          // [10:1:40] edge length in mm
mark_depth = 0.6;   // [0.2:0.1:1.5] depth of the engraved axis marks
chamfer = 0.6;      // [0:0.1:2] bottom chamfer against elephant's foot

module chamfered_cube(s, c) {
    hull() {
        translate([c, c, 0]) cube([s - 2 * c, s - 2 * c, c]);
        translate([0, 0, c]) cube([s, s, s - c]);
    }
}

// An engraved arrow on a face: shaft plus head, pointing along +u.
module arrow(len, w) {
    translate([-len / 2, -w / 2]) square([len * 0.65, w]);
    translate([len * 0.15, 0]) polygon([[0, -w * 1.8], [len * 0.35, 0], [0, w * 1.8]]);
}

difference() {
    chamfered_cube(size, chamfer);
    // X mark on the front face (y = 0), pointing +X.
    translate([size / 2, mark_depth, size / 2]) rotate([90, 0, 0])
        linear_extrude(mark_depth + 0.01) arrow(size * 0.6, size * 0.06);
    // Y mark on the right face (x = size), pointing +Y.
    translate([size - mark_depth, size / 2, size / 2]) rotate([90, 0, 90])
        linear_extrude(mark_depth + 0.01) arrow(size * 0.6, size * 0.06);
    // Z mark on the left face (x = 0), pointing +Z.
    translate([mark_depth, size / 2, size / 2]) rotate([90, -90, -90])
        linear_extrude(mark_depth + 0.01) arrow(size * 0.6, size * 0.06);
}
