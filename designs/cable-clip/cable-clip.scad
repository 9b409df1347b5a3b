// Snap-in cable clip for a desk edge: a C-shaped holder on a screw tab.
// SPDX-License-Identifier: CC-BY-ND-4.0
// You may print and share it unchanged; no adaptations may be shared (ND).

cable_d = 7;      // cable diameter in mm
wall = 1.8;
width = 10;
opening = 0.75;   // opening as a fraction of cable_d (snap fit)
tab = [16, width, 2.4];
hole_d = 3.5;

$fn = 48;

difference() {
    union() {
        // Screw tab.
        translate([-tab.x, 0, 0]) cube([tab.x + cable_d + 2 * wall, width, tab.z]);
        // C-ring standing on the tab.
        translate([cable_d / 2 + wall, 0, cable_d / 2 + wall]) rotate([-90, 0, 0])
            difference() {
                cylinder(d = cable_d + 2 * wall, h = width);
                translate([0, 0, -1]) cylinder(d = cable_d, h = width + 2);
                // The snap opening at the top of the ring.
                translate([-cable_d * opening / 2, -cable_d, -1]) cube([cable_d * opening, cable_d, width + 2]);
            }
    }
    translate([-tab.x / 2, width / 2, -1]) cylinder(d = hole_d, h = tab.z + 2);
}
