// Never finishes in practice: 10^15 iterations that keep nothing, so memory stays flat.
n = len([for (i = [0:99999], j = [0:99999], k = [0:99999]) if (i < 0) i]);
cube(n + 1);
