width = 20 // [10:50]   <- the semicolon is missing
cube([width, 10, 5]);
