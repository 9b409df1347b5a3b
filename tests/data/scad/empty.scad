size = 10; // [1:20]
// Nothing is drawn.
