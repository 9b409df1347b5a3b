// A parametric box with a label, exercising every customizer widget.

/* [Size] */
// Outer width of the box
width = 20; // [10:50]
// Wall thickness
wall = 1.2; // [0.8:0.4:2.4]
depth = 15; // [40]
height = 10;

/* [Style] */
shape = "square"; // [square, round]
grip = 10; // [10:Small, 20:Large]
lid = true;
label = "hi"; // 8
note = "a // b"; // [a // b, plain]
corners = [1, 2, 3]; // [0:5]

/* [Hidden] */
$fn = 24;
secret = 3;

derived = width * 2;

module body() {
    inner = 5; // [1:9]
    difference() {
        cube([width, depth, height]);
        translate([wall, wall, wall]) cube([width - 2 * wall, depth - 2 * wall, height]);
    }
}

after_module = 7; // [1:9]

if (shape == "square") body(); else cylinder(d = width, h = height);
