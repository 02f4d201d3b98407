/** Module input sides beyond this are typos, not models: refused before allocating. Apart from sharp: the flag tables read it. */
export const MAX_INPUT_SIDE = 4096;
