// A small box with a press-fit lid, two parts printed separately.
// SPDX-License-Identifier: CERN-OHL-S-2.0
// Render one part at a time: openscad -D 'part="box"' or -D 'part="lid"'.

part = "box";         // [box, lid]
inner = [50, 35, 25]; // inside size of the box in mm
wall = 2;             // [1.2:0.2:4]
floor_t = 1.6;        // [1:0.2:3]
corner_r = 4;         // [1:8]
lip_h = 5;            // [3:10] height of the lid's inner lip
clearance = 0.25;     // [0.1:0.05:0.5] gap between lip and box wall

$fn = 32;

module rounded(size, r) {
    linear_extrude(size.z)
        offset(r = r) offset(delta = -r) square([size.x, size.y]);
}

module box() {
    outer = [inner.x + 2 * wall, inner.y + 2 * wall, inner.z + floor_t];
    difference() {
        rounded(outer, corner_r);
        translate([wall, wall, floor_t]) rounded([inner.x, inner.y, inner.z + 1], max(corner_r - wall, 0.5));
    }
}

module lid() {
    outer = [inner.x + 2 * wall, inner.y + 2 * wall, floor_t];
    lip = [inner.x - 2 * clearance, inner.y - 2 * clearance, lip_h];
    union() {
        rounded(outer, corner_r);
        translate([wall + clearance, wall + clearance, floor_t - 0.01]) difference() {
            rounded(lip, max(corner_r - wall, 0.5));
            translate([wall, wall, -0.01]) rounded([lip.x - 2 * wall, lip.y - 2 * wall, lip_h + 1], 0.5);
        }
    }
}

if (part == "box") box(); else lid();
