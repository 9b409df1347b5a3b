// Parametric shelf bracket: an L with a diagonal gusset and countersunk screw holes.
// SPDX-License-Identifier: CC-BY-SA-4.0
// Open it in OpenSCAD's Customizer (Window > Customizer) to change the sizes.

/* [Size] */
width = 20;           // [10:50] bracket width in mm
arm_length = 60;      // [30:150] length of each arm in mm
thickness = 4;        // [2:0.5:10] arm thickness in mm
gusset = true;        // add the diagonal brace

/* [Screws] */
hole_diameter = 4.2;  // [2.5:0.1:6.5] screw shank clearance
countersink = true;   // countersink the holes for flat-head screws
holes_per_arm = 2;    // [1:4]

/* [Hidden] */
$fn = 32;
eps = 0.01;

module arm() {
    cube([arm_length, width, thickness]);
}

module holes() {
    step = (arm_length - thickness) / (holes_per_arm + 1);
    for (i = [1:holes_per_arm]) {
        translate([thickness + i * step, width / 2, -eps]) {
            cylinder(d = hole_diameter, h = thickness + 2 * eps);
            if (countersink)
                translate([0, 0, thickness - hole_diameter / 2 + eps])
                    cylinder(d1 = hole_diameter, d2 = hole_diameter * 2, h = hole_diameter / 2 + eps);
        }
    }
}

module brace() {
    g = arm_length * 0.6;
    translate([0, (width - thickness) / 2, 0]) rotate([90, 0, 0]) mirror([0, 0, 1])
        linear_extrude(thickness)
            polygon([[thickness - eps, thickness - eps], [g, thickness - eps], [thickness - eps, g]]);
}

union() {
    difference() { arm(); holes(); }
    // The vertical arm: the horizontal one rotated up about the Y axis.
    translate([thickness, 0, 0]) rotate([0, -90, 0]) difference() { arm(); holes(); }
    if (gusset) brace();
}
