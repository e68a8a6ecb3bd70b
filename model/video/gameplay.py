"""The built-in training video: procedural, Game Boy style gameplay footage of a top-down game.

The course trains its predictive ViT on Game Boy footage (160x144, four gray levels) of a top-down
game; that footage is not public, so this module renders a stand-in with numpy alone, frame by frame,
deterministically from a seed (one ``numpy.random.Generator`` drives every decision).

The game: a town on a tile map larger than the screen (grass, flowers, trees, ponds, roads, fences,
signs, houses with doors) and the inside of each house. A player walks tile to tile at 2 px per frame
(a 16 px tile in 8 frames, 30 frames per second) with a walking animation, and the camera follows it,
so the scenery scrolls. A controller picks goals (a random spot, a sign to read, a character to talk
to, a house to enter, the way out), walks there, stops now and then and looks around. Wandering
characters step about near their homes. Rarely, a text box is typed over the bottom of the screen,
or the screen fades to white and back while the player goes through a door.

What a next-frame predictor can and cannot know differs on purpose:
- static scenery: every tile is the same each time it comes into view; water ripples and flowers
  cycle with a fixed period (8 frames per phase);
- scrolling: a step, once started, runs to the end of its tile at constant speed, and walks usually
  go on over several tiles;
- decisions: when the player or a character starts, stops or turns comes from the random generator
  and cannot be seen coming in the frames;
- rare events: text boxes (typed one letter per frame) and door transitions.

File layout written by ``write_gameplay_hdf5`` (the course format of ``model.video.hdf5`` plus metadata;
N frames, field i describes frame i):

    /rgb_images           (N,) vlen uint8  PNG bytes, 8-bit grayscale 144x160 (HxW), values in GRAY_LEVELS
    /meta/camera_x        (N,) int32  left edge of the screen in the current area, px
    /meta/camera_y        (N,) int32  top edge of the screen in the current area, px
    /meta/camera_dx       (N,) int16  camera motion since the previous frame, px (positive: scenery moves
    /meta/camera_dy       (N,) int16    left / up); 0 in frame 0 and in the frame where the area changes
    /meta/player_moving   (N,) bool   the player moved since the previous frame
    /meta/player_facing   (N,) uint8  0 down, 1 up, 2 left, 3 right
    /meta/player_tile_x   (N,) int16  the tile the player stands on (while walking: the tile it leaves)
    /meta/player_tile_y   (N,) int16
    /meta/npc_moving      (N,) bool   a character on screen moved since the previous frame
    /meta/npcs_visible    (N,) uint8  characters at least partly on screen
    /meta/overlay         (N,) bool   a text box covers the bottom 48 rows
    /meta/transition      (N,) bool   fading out of or into a house (the area changes mid-way)
    /meta/area            (N,) uint8  0 the town, k >= 1 the inside of house k
    attrs: generator ("model.video.gameplay"), version, seed, fps, height, width, gray_levels
"""
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from einops import rearrange

from model.video.hdf5 import VideoWriter

SCREEN_HEIGHT, SCREEN_WIDTH = 144, 160
TILE = 16
# Palette index -> gray value; index 0 is the lightest shade, 3 black, like the Game Boy's four shades.
GRAY_LEVELS = np.array([255, 170, 85, 0], dtype=np.uint8)
FPS = 30
VERSION = 1
DEFAULT_NUM_FRAMES = 6000
DEFAULT_SEED = 0

PLAYER_SPEED = 2          # px per frame: one tile in 8 frames
NPC_SPEED = 1             # characters stroll at half the player's speed
ANIMATION_PERIOD = 8      # frames per phase of water and flowers
PHASES = 4
PLAYER_SCREEN_X, PLAYER_SCREEN_Y = 64, 64  # where the camera keeps the player's tile on screen
SPRITE_LIFT = 4           # sprites are drawn 4 px up, so they stand in their tile rather than on its edge
# The player's sprite on the screen, (top, bottom, left, right): the camera keeps it there in every frame.
PLAYER_BOX = (PLAYER_SCREEN_Y - SPRITE_LIFT, PLAYER_SCREEN_Y - SPRITE_LIFT + TILE,
              PLAYER_SCREEN_X, PLAYER_SCREEN_X + TILE)
MARGIN = 6                # tiles of forest (town) or darkness (houses) around each map; the camera never leaves it
TOWN_ROWS, TOWN_COLS = 30, 36
TEXT_TOP = 96             # the text box covers rows 96..143

DOWN, UP, LEFT, RIGHT = range(4)
STEPS = {DOWN: (1, 0), UP: (-1, 0), LEFT: (0, -1), RIGHT: (0, 1)}  # direction -> (d_row, d_col)
OPPOSITE = {DOWN: UP, UP: DOWN, LEFT: RIGHT, RIGHT: LEFT}

# Tile kinds. Walkers wander on WALKABLE tiles; doors and exit mats are entered only on purpose.
(GRASS, FLOWERS, PATH, TREE, WATER, FENCE, SIGN, HOUSE, DOOR,
 VOID, FLOOR, WALL_TOP, WALL, WINDOW, SHELF_TOP, SHELF, TABLE, PLANT, RUG, MAT) = range(20)
WALKABLE = frozenset({GRASS, FLOWERS, PATH, FLOOR, RUG})

# Controller: chances per goal choice, per tile and per frame, and durations in frames.
TOWN_GOALS = {"door": 0.10, "read": 0.05, "talk": 0.04}
HOUSE_GOALS = {"read": 0.15, "talk": 0.15}
STOP_CHANCE = 0.03        # per tile walked: stop on the way for a while
LOOK_CHANCE = 0.03        # per frame of standing still: look in another direction
TURN_FRAMES = 3           # turning on the spot before walking off
NPC_IDLE = (15, 90)       # frames between two moves of a character
NPC_RANGE = 3             # tiles a character strays from its home
FADE = (1, 1, 1, 1, 2, 2, 2, 2) + (3,) * 12 + (2, 2, 2, 2, 1, 1, 1, 1)  # fade to white, per frame
FADE_SWITCH = 14          # frame of FADE at which the area changes (the screen is white)


# ----------------------------------------------------------------------------------------------
# Pixel art. Digits are palette indices, '.' is transparent (the tile underneath shows).

def _art(text):
    """ASCII art -> int8 (H, W), -1 where transparent."""
    rows = text.split()
    return np.array([[-1 if ch == "." else int(ch) for ch in row] for row in rows], dtype=np.int8)


def _over(base, art):
    """Draw art (H, W) int8 over base (H, W) uint8 -> new uint8 array."""
    out = base.copy()
    out[art >= 0] = art[art >= 0]
    return out


GRASS_ART = _art("""
................
................
..2.2...........
...2............
................
................
..........2.2...
...........2....
................
................
................
.....2.2........
......2.........
................
................
................
""")
TREE_ART = _art("""
.....333333.....
...3322222233...
..322212222123..
.32212222221223.
.32122212212223.
3221222222221223
3222212212222223
3212222222212123
3221212222122223
.32222122212223.
.32212222222123.
..322222122223..
...3322222233...
.....332233.....
......3113......
......3333......
""")
WATER_ART = _art("""
1111111111111111
1111111111111111
1110001111111111
1101110111111111
1111111111111111
1111111111111111
1111111111111111
1111111111000111
1111111111011101
1111111111111111
1111111111111111
1111111111111111
1100011111111111
1011101111111111
1111111111111111
1111111111111111
""")
FLOWER_ART = (_art("""
................
..333...........
.30003..........
.30303..........
.30003..........
..333...........
................
................
................
.........333....
........30003...
........30303...
........30003...
.........333....
................
................
"""), _art("""
................
...333..........
..30003.........
..30303.........
..30003.........
...333..........
................
................
................
........333.....
.......30003....
.......30303....
.......30003....
........333.....
................
................
"""))
FENCE_ART = _art("""
................
................
.333.......333..
.303.......303..
3333333333333333
2002002002002002
3333333333333333
.303.......303..
3333333333333333
2002002002002002
3333333333333333
.303.......303..
.303.......303..
.333.......333..
................
................
""")
SIGN_ART = _art("""
................
................
.33333333333333.
.30000000000003.
.30333033303303.
.30000000000003.
.30333303330003.
.30000000000003.
.33333333333333.
......3223......
......3223......
......3223......
......3223......
.....322223.....
................
................
""")
TABLE_ART = _art("""
................
................
3333333333333333
3000000000000003
3011111111111103
3011111111111103
3000000000000003
3333333333333333
3222222222222223
.3223......3223.
.3223......3223.
.3223......3223.
.3333......3333.
................
................
................
""")
PLANT_ART = _art("""
......33........
....3311333.....
...311311113....
..31131113113...
..31113131113...
...311113113....
....33113333....
.....333333.....
....32222223....
....30000003....
....32222223....
.....322223.....
.....322223.....
.....333333.....
................
................
""")
WINDOW_ART = _art("""
................
................
...3333333333...
...3000030000...
...3011030110...
...3011030110...
...3333333333...
...3011030110...
...3011030110...
...3333333333...
................
................
................
................
................
................
""")
MAT_ART = _art("""
................
................
................
................
..333333333333..
..322222222223..
..323232323223..
..322222222223..
..323232323223..
..322222222223..
..333333333333..
................
................
................
................
................
""")


@lru_cache(maxsize=None)
def tile_atlas():
    """-> uint8 (num_kinds, PHASES, 16, 16): palette indices of every tile kind in every animation phase."""
    blank = np.zeros((TILE, TILE), np.uint8)
    grass = _over(blank, GRASS_ART)
    path = blank.copy()
    path[[3, 11], [12, 5]] = 1  # a few pebbles
    floor = blank.copy()  # wooden planks with staggered joints
    floor[[7, 15], :] = 1
    floor[0:7, 5] = floor[8:15, 13] = 1
    wallpaper = np.ones((TILE, TILE), np.uint8)
    wallpaper[:, 1::4] = 0
    wall = wallpaper.copy()
    wall[11:13] = 2  # skirting board
    wall[13:] = 3
    rug = np.ones((TILE, TILE), np.uint8)
    y, x = np.mgrid[0:TILE, 0:TILE]
    rug[(abs(y - 7.5) + abs(x - 7.5)) < 4] = 2
    shelf = np.full((2 * TILE, TILE), 3, np.uint8)  # a two-tile bookshelf against the wall
    for top in (2, 12, 22):
        books = np.array([1, 0, 1, 2, 0, 1, 0, 0, 1, 2, 0, 1, 0, 1])
        heights = np.array([7, 6, 7, 5, 7, 6, 6, 7, 5, 7, 6, 7, 5, 6])
        for i, (shade, height) in enumerate(zip(books, heights)):
            shelf[top + 8 - height:top + 8, 1 + i] = shade
        shelf[top + 8] = 2

    static = {
        GRASS: grass, PATH: path, TREE: _over(grass, TREE_ART), FENCE: _over(grass, FENCE_ART),
        SIGN: _over(grass, SIGN_ART), HOUSE: blank, DOOR: blank, VOID: np.full((TILE, TILE), 3, np.uint8),
        FLOOR: floor, WALL_TOP: wallpaper, WALL: wall, WINDOW: _over(wallpaper, WINDOW_ART),
        SHELF_TOP: shelf[:TILE], SHELF: shelf[TILE:], TABLE: _over(floor, TABLE_ART),
        PLANT: _over(floor, PLANT_ART), RUG: rug, MAT: _over(floor, MAT_ART),
    }
    atlas = np.zeros((MAT + 1, PHASES, TILE, TILE), np.uint8)
    for kind, pixels in static.items():
        atlas[kind] = pixels
    water = WATER_ART.astype(np.uint8)
    for phase in range(PHASES):
        atlas[WATER, phase] = np.roll(water, 4 * phase, axis=1)  # ripples drift one tile per cycle
        atlas[FLOWERS, phase] = _over(grass, FLOWER_ART[phase % 2])
    return atlas


# Characters: 16x16, facing down, up and left (right is left mirrored), standing and mid-step.
_DOWN = """
......3333......
....33222233....
...3222222223...
..322222222223..
..333333333333..
..300000000003..
..303300003303..
..300300003003..
...3000000003...
....33000033....
...3311111133...
..300311113003..
..300311113003..
...3322222233...
"""
_UP = """
......3333......
....33222233....
...3222222223...
..322222222223..
..322222222223..
..322222222223..
..332222222233..
..303333333303..
...3000000003...
....33333333....
...3311111133...
..300311113003..
..300311113003..
...3322222233...
"""
_LEFT = """
......33333.....
....332222233...
...32222222223..
..3222222222223.
.333333332222223
..30000003222223
..30300003322223
..30300000333223
...300000000033.
....3300000033..
....33111113....
...301111113....
...300111113....
....3322223.....
"""
_FRONT_LEGS = ("""
....322..223....
....333..333....
""", """
....322.3333....
....333.........
""")
_SIDE_LEGS = ("""
.....32223......
.....33333......
""", """
...322..3223....
...333...333....
""")
# Palette remaps that dress the same figure differently: the player, then three townsfolk.
LOOKS = (np.array([0, 1, 2, 3]), np.array([0, 2, 1, 3]), np.array([0, 0, 3, 3]), np.array([0, 2, 3, 3]))


@lru_cache(maxsize=None)
def sprites():
    """-> int8 (len(LOOKS), 4 facings, 3 frames, 16, 16); frames: standing, step A, step B; -1 transparent."""
    sheet = np.zeros((len(LOOKS), 4, 3, TILE, TILE), np.int8)
    for facing, body, legs in ((DOWN, _DOWN, _FRONT_LEGS), (UP, _UP, _FRONT_LEGS), (LEFT, _LEFT, _SIDE_LEGS)):
        stand, step = _art(body + legs[0]), _art(body + legs[1])
        # Front and back views alternate the stepping leg by mirroring; the profile has one step pose.
        other = step[:, ::-1] if facing in (DOWN, UP) else step
        sheet[0, facing] = stand, step, other
    sheet[0, RIGHT] = sheet[0, LEFT, :, :, ::-1]
    for look, remap in enumerate(LOOKS[1:], start=1):
        sheet[look] = np.where(sheet[0] >= 0, remap[np.maximum(sheet[0], 0)], -1)
    return sheet


# A 5x7 font (rows as 5-bit numbers, leftmost pixel = 16) for the text boxes.
FONT = {
    "A": (14, 17, 17, 31, 17, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30), "C": (14, 17, 16, 16, 16, 17, 14),
    "D": (30, 17, 17, 17, 17, 17, 30), "E": (31, 16, 16, 30, 16, 16, 31), "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15), "H": (17, 17, 17, 31, 17, 17, 17), "I": (14, 4, 4, 4, 4, 4, 14),
    "J": (7, 2, 2, 2, 2, 18, 12), "K": (17, 18, 20, 24, 20, 18, 17), "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17), "N": (17, 17, 25, 21, 19, 17, 17), "O": (14, 17, 17, 17, 17, 17, 14),
    "P": (30, 17, 17, 30, 16, 16, 16), "Q": (14, 17, 17, 17, 21, 18, 13), "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30), "T": (31, 4, 4, 4, 4, 4, 4), "U": (17, 17, 17, 17, 17, 17, 14),
    "V": (17, 17, 17, 17, 17, 10, 4), "W": (17, 17, 17, 21, 21, 21, 10), "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 17, 10, 4, 4, 4), "Z": (31, 1, 2, 4, 8, 16, 31), "0": (14, 17, 19, 21, 25, 17, 14),
    "1": (4, 12, 4, 4, 4, 4, 14), "2": (14, 17, 1, 2, 4, 8, 31), "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14), "6": (6, 8, 16, 30, 17, 17, 14),
    "7": (31, 1, 2, 4, 8, 8, 8), "8": (14, 17, 17, 14, 17, 17, 14), "9": (14, 17, 17, 15, 1, 2, 12),
    ".": (0, 0, 0, 0, 0, 12, 12), ",": (0, 0, 0, 0, 12, 4, 8), "!": (4, 4, 4, 4, 4, 0, 4),
    "?": (14, 17, 1, 2, 4, 0, 4), "'": (12, 4, 8, 0, 0, 0, 0), "-": (0, 0, 0, 31, 0, 0, 0),
    ":": (0, 12, 12, 0, 12, 12, 0), " ": (0,) * 7,
}
NAMES = ("ADA", "BEN", "CORA", "DUNCAN", "ELSA", "FINN", "GRETA", "HUGO", "IRIS", "JONAS", "KAI", "LENA")
ROAD_SIGNS = (("WELCOME TO", "WILLOW TOWN!"), ("NORTH: CEDAR WOODS", "SOUTH: ROUTE 3"),
              ("DO NOT FEED THE", "POND FISH."), ("TOWN HALL IS", "CLOSED TODAY."))
SHELF_TEXTS = (("IT'S A BOOKSHELF", "FULL OF OLD MAPS."), ("A BOOK ON BIRDS.", "IT LOOKS READ."),
               ("RECIPES FOR", "APPLE PIE."), ("DUSTY NOVELS.", "NOTHING NEW."))
TALK_TEXTS = (("NICE DAY FOR A", "WALK, ISN'T IT?"), ("THE POND IS DEEPER", "THAN IT LOOKS."),
              ("I LOST MY CAT.", "HAVE YOU SEEN IT?"), ("HELLO THERE!", ""),
              ("THE WOODS ARE", "DARK AT NIGHT."), ("I'M WAITING FOR", "THE MAIL."))


# ----------------------------------------------------------------------------------------------
# Maps

@dataclass
class Walker:
    """The player or a wandering character; stands on tile (row, col) or walks from it to the next."""
    row: int
    col: int
    facing: int = DOWN
    speed: int = PLAYER_SPEED
    look: int = 0
    heading: int | None = None  # direction of the step under way
    offset: int = 0             # px walked of that step
    steps: int = 0              # steps completed; alternates the stepping leg
    moved: bool = False         # moved in the latest frame
    home: tuple = (0, 0)        # characters stay within NPC_RANGE tiles of it
    timer: int = 0              # characters: frames until the next move

    @property
    def moving(self):
        return self.heading is not None

    def next_tile(self, direction=None):
        d_row, d_col = STEPS[self.heading if direction is None else direction]
        return self.row + d_row, self.col + d_col

    def tiles(self):
        """Tiles it occupies: the one it stands on, and the one it walks into."""
        return {(self.row, self.col), self.next_tile()} if self.moving else {(self.row, self.col)}

    def pixel(self):
        """-> (x, y) of the top-left corner of its 16x16 square in the area, px."""
        d_row, d_col = STEPS[self.heading] if self.moving else (0, 0)
        return self.col * TILE + d_col * self.offset, self.row * TILE + d_row * self.offset

    def start(self, direction):
        self.facing = self.heading = direction
        self.offset = 0

    def advance(self):
        """Walk one frame further; -> True when the step ends on the next tile."""
        self.offset += self.speed
        self.moved = True
        if self.offset < TILE:
            return False
        self.row, self.col = self.next_tile()
        self.heading, self.offset = None, 0
        self.steps += 1
        return True

    def frame(self):
        """Sprite frame: a step pose in the first half of each step, standing otherwise."""
        if self.moving and self.offset <= TILE // 2:
            return 1 + self.steps % 2
        return 0


@dataclass
class Area:
    """One map: its tiles, pre-rendered pixels, characters and where its doors lead."""
    tiles: np.ndarray                     # (rows, cols) tile kinds
    pixels: np.ndarray = None             # (PHASES, rows * 16, cols * 16) palette indices
    npcs: list = field(default_factory=list)
    exits: dict = field(default_factory=dict)     # door or mat tile -> (area, arrival tile, walk-off direction)
    texts: dict = field(default_factory=dict)     # readable tile -> two lines of text
    houses: list = field(default_factory=list)    # (row, col, width, height, door col, roof shade)

    def passable(self, tile):
        row, col = tile
        return self.tiles[row, col] in WALKABLE


def _blob(rng, rows, cols, center, radius_y, radius_x, keep=0.85):
    """Tiles of a ragged ellipse -> bool (rows, cols)."""
    y, x = np.mgrid[0:rows, 0:cols]
    inside = ((y - center[0]) / radius_y) ** 2 + ((x - center[1]) / radius_x) ** 2 <= 1
    return inside & (rng.random((rows, cols)) < keep)


def _grow(mask, steps):
    """Grow a bool mask by ``steps`` tiles up, down, left and right."""
    mask = mask.copy()
    for _ in range(steps):
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        mask = grown
    return mask


def _build_town(rng):
    """-> (Area of the town, start tile, list of house door tiles)."""
    rows, cols = TOWN_ROWS + 2 * MARGIN, TOWN_COLS + 2 * MARGIN
    top, left, bottom, right = MARGIN, MARGIN, MARGIN + TOWN_ROWS, MARGIN + TOWN_COLS
    tiles = np.full((rows, cols), TREE, np.int8)
    tiles[top:bottom, left:right] = GRASS
    edge = np.zeros((rows, cols), bool)  # a ragged forest edge two tiles deep
    edge[top:bottom, left:right] = True
    edge[top + 2:bottom - 2, left + 2:right - 2] = False
    tiles[edge & (rng.random((rows, cols)) < 0.4)] = TREE
    tiles[top:bottom, [left, right - 1]] = TREE
    tiles[[top, bottom - 1], left:right] = TREE
    free = np.ones((rows, cols), bool)  # not yet promised to a road, path, sign or door front

    # Two crossing roads, two tiles wide, from forest to forest.
    road_row = int(rng.integers(top + 9, bottom - 9))
    road_col = int(rng.integers(left + 9, right - 9))
    tiles[road_row:road_row + 2, left:right] = PATH
    tiles[top:bottom, road_col:road_col + 2] = PATH
    free[tiles == PATH] = False
    area = Area(tiles)

    def scatter(kind, count, radius, margin):
        placed = 0
        for _ in range(50 * count):
            if placed == count:
                break
            center = (rng.uniform(top, bottom), rng.uniform(left, right))
            blob = _blob(rng, rows, cols, center, rng.uniform(*radius), rng.uniform(*radius),
                         keep=1.0 if kind == WATER else 0.85)
            grown = _grow(blob, margin)  # ponds keep a tile of shore around them
            if margin and not np.all((tiles[grown] == GRASS) & free[grown]):
                continue
            tiles[blob & (tiles == GRASS) & free] = kind
            if margin:
                free[grown] = False
            placed += 1

    scatter(WATER, int(rng.integers(1, 3)), (2.0, 3.6), margin=1)  # ponds first, or houses fill the town

    doors = []
    for _ in range(300):
        if len(doors) == 5:
            break
        width, height = int(rng.integers(4, 7)), int(rng.integers(3, 5))
        row = int(rng.integers(top + 2, bottom - height - 3))
        col = int(rng.integers(left + 2, right - width - 2))
        if not (np.all(tiles[row - 1:row + height + 2, col - 1:col + width + 1] == GRASS)
                and np.all(free[row - 1:row + height + 2, col - 1:col + width + 1])):
            continue
        door_col = int(rng.integers(col + 1, col + width - 1))
        front = row + height
        # A footpath from the door to a road: straight down to the east-west road, or along the
        # row in front of the door to the north-south road.
        if front < road_row:
            path = [(r, door_col) for r in range(front, road_row)]
        else:
            step = 1 if road_col > door_col else -1
            path = [(front, c) for c in range(door_col, road_col if step > 0 else road_col + 1, step)]
        if any(tiles[tile] not in (GRASS, PATH, TREE) for tile in path):
            continue
        tiles[row:row + height, col:col + width] = HOUSE
        tiles[row + height - 1, door_col] = DOOR
        for tile in path:
            tiles[tile] = PATH
            free[tile] = False
        free[row - 1:row + height + 1, col - 1:col + width + 1] = False
        area.houses.append((row, col, width, height, door_col, int(rng.integers(1, 3))))
        doors.append((row + height - 1, door_col))
        sign = (front, door_col + (1 if rng.random() < 0.5 else -1))
        below = (sign[0] + 1, sign[1])
        if rng.random() < 0.6 and tiles[sign] == GRASS and tiles[below] in (GRASS, PATH) and free[sign]:
            tiles[sign] = SIGN
            free[sign] = free[below] = False
            area.texts[sign] = (f"{NAMES[int(rng.integers(len(NAMES)))]}'S HOUSE", "")

    # Road signs north of the east-west road, read from the road.
    for _ in range(2):
        sign = (road_row - 1, int(rng.integers(left + 2, right - 2)))
        if tiles[sign] == GRASS and free[sign]:
            tiles[sign] = SIGN
            free[sign] = False
            area.texts[sign] = ROAD_SIGNS[int(rng.integers(len(ROAD_SIGNS)))]

    # Fences along the roads; gaps where paths cross.
    for _ in range(int(rng.integers(2, 5))):
        fence_row = road_row - 1 if rng.random() < 0.5 else road_row + 2
        start = int(rng.integers(left + 2, right - 8))
        for c in range(start, start + int(rng.integers(3, 8))):
            if tiles[fence_row, c] == GRASS and free[fence_row, c]:
                tiles[fence_row, c] = FENCE

    scatter(TREE, 14, (0.8, 2.4), margin=0)
    scatter(FLOWERS, 7, (0.8, 1.8), margin=0)
    return area, (road_row, road_col), doors


def _build_house(rng):
    """-> (Area of a room, mat tile): two rows of wall, a wooden floor, furniture, an exit mat."""
    for _ in range(100):
        width, height = int(rng.integers(7, 10)), int(rng.integers(6, 8))
        rows, cols = height + 2 * MARGIN, width + 2 * MARGIN
        top, left = MARGIN, MARGIN
        bottom, right = top + height, left + width
        tiles = np.full((rows, cols), VOID, np.int8)
        tiles[top, left:right] = WALL_TOP
        tiles[top + 1, left:right] = WALL
        tiles[top + 2:bottom, left:right] = FLOOR
        area = Area(tiles)
        mat = (bottom - 1, int(rng.integers(left + 1, right - 1)))
        tiles[mat] = MAT
        columns = rng.permutation(np.arange(left, right))
        for c in columns[:2]:  # bookshelves, read from the floor in front
            tiles[top, c], tiles[top + 1, c] = SHELF_TOP, SHELF
            area.texts[(top + 1, c)] = SHELF_TEXTS[int(rng.integers(len(SHELF_TEXTS)))]
        for c in columns[2:4]:
            tiles[top, c] = WINDOW
        table_row, table_col = int(rng.integers(top + 3, bottom - 2)), int(rng.integers(left + 1, right - 2))
        tiles[table_row, table_col:table_col + 2] = TABLE
        rug_row, rug_col = int(rng.integers(top + 2, bottom - 2)), int(rng.integers(left, right - 2))
        rug = tiles[rug_row:rug_row + 2, rug_col:rug_col + 2]
        rug[rug == FLOOR] = RUG
        for corner in ((top + 2, left), (top + 2, right - 1)):
            if rng.random() < 0.6:
                tiles[corner] = PLANT
        entry = (mat[0] - 1, mat[1])
        if tiles[entry] not in WALKABLE:
            continue
        reach = _distances(area, entry)
        floor = np.isin(tiles, list(WALKABLE))
        readable_fronts = [(row + 1, col) for row, col in area.texts]
        if np.all(reach[floor] >= 0) and all(reach[front] >= 0 for front in readable_fronts):
            return area, mat
    raise RuntimeError("no room layout found")  # cannot happen with the sizes above


def _distances(area, start, blocked=(), allowed=()):
    """Breadth-first walking distances from start -> int32 (rows, cols), -1 where unreachable.

    Walks over passable tiles and the ``allowed`` ones (a door or mat), never over ``blocked`` ones.
    """
    dist = np.full(area.tiles.shape, -1, np.int32)
    dist[start] = 0
    frontier = [start]
    while frontier:
        nxt = []
        for row, col in frontier:
            for d_row, d_col in STEPS.values():
                tile = (row + d_row, col + d_col)
                if dist[tile] < 0 and (area.passable(tile) or tile in allowed) and tile not in blocked:
                    dist[tile] = dist[row, col] + 1
                    nxt.append(tile)
        frontier = nxt
    return dist


def _draw_house(canvas, row, col, width, height, door_col, roof_shade):
    """Draw a house over its tiles: a shingled roof two tiles high, walls with windows and a door.

    canvas: (PHASES, H, W) palette indices, drawn in place.
    """
    x0, y0, x1, y1 = col * TILE, row * TILE, (col + width) * TILE, (row + height) * TILE
    roof = canvas[:, y0:y0 + 2 * TILE, x0:x1]
    roof[:] = roof_shade
    for band, y in enumerate(range(3, 2 * TILE - 2, 5)):
        roof[:, y] = 3
        roof[:, y - 4:y, (4 * band) % 8::8] = 3  # staggered shingle joints
    roof[:, :2] = 3
    roof[:, -3:] = 3
    roof[:, :, :1] = roof[:, :, -1:] = 3
    walls = canvas[:, y0 + 2 * TILE:y1, x0:x1]
    walls[:] = 0
    walls[:, 3::4] = 1  # siding
    walls[:, :, :1] = walls[:, :, -1:] = 3
    walls[:, -2:] = 3
    for r in range(row + 2, row + height):
        for c in range(col + 1, col + width - 1):
            if c == door_col:
                continue
            x, y = c * TILE, r * TILE
            canvas[:, y + 3:y + 12, x + 2:x + 14] = 3
            canvas[:, y + 4:y + 11, x + 3:x + 13] = 1
            canvas[:, y + 4:y + 7, x + 4:x + 7] = 0  # glare
            canvas[:, y + 4:y + 11, x + 7:x + 9] = 3
    x, y = door_col * TILE, (row + height - 1) * TILE
    canvas[:, y + 1:y + TILE, x + 2:x + 14] = 3
    canvas[:, y + 3:y + TILE - 1, x + 4:x + 12] = 2
    canvas[:, y + 9:y + 11, x + 9:x + 11] = 0  # door knob


def _outline(pixels, mask, shades):
    """Line the inside of a region's border: shades[0] on the outermost pixel row, shades[1] next, ...

    pixels: (PHASES, H, W) palette indices, drawn in place; mask: bool (rows, cols) tiles of the region.
    Lines only darken, so a shore does not paint over lighter ripples with white.
    """
    for d_row, d_col in STEPS.values():
        border = mask & ~np.roll(mask, (-d_row, -d_col), axis=(0, 1))  # the neighbour that way is outside
        for row, col in zip(*np.nonzero(border)):
            y, x = row * TILE, col * TILE
            for depth, shade in enumerate(shades):
                line = TILE - 1 - depth if d_row + d_col > 0 else depth
                region = pixels[:, y + line, x:x + TILE] if d_row else pixels[:, y:y + TILE, x + line]
                np.maximum(region, shade, out=region)


def _render_area(area):
    """Pre-render every tile of the area in every animation phase -> area.pixels."""
    tiles = area.tiles
    pixels = rearrange(tile_atlas()[tiles], "r c p y x -> p (r y) (c x)").copy()
    _outline(pixels, tiles == WATER, (3, 2))  # a shore
    _outline(pixels, tiles == PATH, (1,))     # the edge of roads and footpaths
    _outline(pixels, tiles == RUG, (2,))
    for house in area.houses:
        _draw_house(pixels, *house)
    area.pixels = pixels


def build_world(rng):
    """-> (list of Areas: the town first, then one per house; the player's start tile)."""
    town, start, doors = _build_town(rng)
    areas = [town]
    for door in doors:
        house, mat = _build_house(rng)
        town.exits[door] = (len(areas), mat, UP)
        house.exits[mat] = (0, door, DOWN)
        areas.append(house)
    reach = _distances(town, start)
    for area in areas:
        _render_area(area)
        # Characters wander near a home tile away from doors, mats and the tiles in front of them.
        reserved = {start}
        for row, col in area.exits:
            reserved |= {(row, col), (row + 1, col), (row - 1, col)}
        candidates = [tuple(tile) for tile in np.argwhere(np.isin(area.tiles, list(WALKABLE)))
                      if tuple(tile) not in reserved and (area is not town or reach[tuple(tile)] >= 0)]
        count = int(rng.integers(4, 7)) if area is town else int(rng.random() < 0.8)
        for index in rng.choice(len(candidates), size=count, replace=False):
            row, col = candidates[index]
            area.npcs.append(Walker(row, col, facing=int(rng.integers(4)), speed=NPC_SPEED,
                                    look=int(rng.integers(1, len(LOOKS))), home=(row, col),
                                    timer=int(rng.integers(*NPC_IDLE))))
    return areas, start


# ----------------------------------------------------------------------------------------------
# The game

META_FIELDS = {
    "camera_x": np.int32, "camera_y": np.int32, "camera_dx": np.int16, "camera_dy": np.int16,
    "player_moving": bool, "player_facing": np.uint8, "player_tile_x": np.int16, "player_tile_y": np.int16,
    "npc_moving": bool, "npcs_visible": np.uint8, "overlay": bool, "transition": bool, "area": np.uint8,
}


class GameplayWorld:
    """The game state and its controller; ``step()`` renders the next frame.

        world = GameplayWorld(seed=0)
        frame, info = world.step()   # frame uint8 (144, 160) gray; info: one value per META_FIELDS key
    """

    def __init__(self, seed=DEFAULT_SEED):
        self.rng = np.random.default_rng(seed)
        self.areas, start = build_world(self.rng)
        self.area = 0
        self.player = Walker(*start, facing=DOWN)
        self.plan = []          # directions still to walk
        self.goal = None        # (kind, detail) of the walk under way
        self.pause = 20         # frames to stand still
        self.waits = 0          # times the next tile was found taken
        self.visits = 0         # goals left before leaving a house
        self.text = None        # open text box: {"lines", "typed", "hold"}
        self.transition = None  # door transition: {"t", "exit"}
        self.frame_index = 0
        self._previous_camera = None

    # -- controller -----------------------------------------------------------------------------

    def _occupied(self, exclude=None):
        taken = set() if exclude is self.player else set(self.player.tiles())
        for npc in self.areas[self.area].npcs:
            if npc is not exclude:
                taken |= npc.tiles()
        return taken

    def _route(self, goal, allow=(), blocked=()):
        """Directions from the player's tile to goal, preferring straight lines -> list, or None.

        Walking distances are measured from the goal; the walk then goes downhill, keeping its
        direction while that stays on a shortest route. ``allow``: extra tiles that may be entered
        (a door or mat as the last step).
        """
        dist = _distances(self.areas[self.area], goal, blocked, allowed=allow)
        here = (self.player.row, self.player.col)
        if dist[here] < 0:
            return None
        plan, facing = [], self.player.facing
        while dist[here] > 0:
            options = [d for d in STEPS if dist[here[0] + STEPS[d][0], here[1] + STEPS[d][1]] == dist[here] - 1]
            if facing not in options:
                facing = options[int(self.rng.integers(len(options)))]
            plan.append(facing)
            here = (here[0] + STEPS[facing][0], here[1] + STEPS[facing][1])
        return plan

    def _choose_goal(self):
        """Pick what to do next and plan the walk there."""
        area = self.areas[self.area]
        here = (self.player.row, self.player.col)
        dist = _distances(area, here)
        chances = TOWN_GOALS if self.area == 0 else HOUSE_GOALS
        draw = self.rng.random()
        if self.area and self.visits == 0:
            mat = next(iter(area.exits))
            self.goal, self.plan = ("exit", mat), self._route(mat, allow=[mat])
            return
        if draw < chances.get("door", 0):
            doors = [door for door in area.exits if dist[door[0] + 1, door[1]] >= 0]
            if not doors:
                return
            door = doors[int(self.rng.integers(len(doors)))]
            self.goal, self.plan = ("door", door), self._route(door, allow=[door])
        elif draw < chances.get("door", 0) + chances["read"]:
            readable = [tile for tile in area.texts if dist[tile[0] + 1, tile[1]] > 0]
            if not readable:
                return
            tile = readable[int(self.rng.integers(len(readable)))]
            self.goal, self.plan = ("read", tile), self._route((tile[0] + 1, tile[1]))
        elif draw < chances.get("door", 0) + chances["read"] + chances["talk"]:
            fronts = [((npc.row + d_row, npc.col + d_col), npc) for npc in area.npcs if not npc.moving
                      for d_row, d_col in STEPS.values() if dist[npc.row + d_row, npc.col + d_col] > 0]
            if not fronts:
                return
            tile, npc = min(fronts, key=lambda front: dist[front[0]])
            self.goal, self.plan = ("talk", npc), self._route(tile, blocked=self._occupied(exclude=self.player))
        else:
            near = 16 if self.area == 0 else 8
            spots = np.argwhere((dist >= 2) & (dist <= near))
            if len(spots) == 0:
                return
            spot = tuple(spots[int(self.rng.integers(len(spots)))])
            self.goal, self.plan = ("walk", spot), self._route(spot)
        if self.plan is None:
            self.goal, self.plan = None, []
        if self.area:
            self.visits -= 1

    def _finish_goal(self):
        """The walk has arrived: read, talk, then stand a while."""
        kind, detail = self.goal
        self.goal = None
        self.pause = int(self.rng.integers(10, 60))
        if kind == "read":
            self.player.facing = UP
            self._open_text(self.areas[self.area].texts[detail])
        elif kind == "talk":
            npc = detail
            for direction, (d_row, d_col) in STEPS.items():
                if not npc.moving and (self.player.row + d_row, self.player.col + d_col) == (npc.row, npc.col):
                    self.player.facing, npc.facing = direction, OPPOSITE[direction]
                    self._open_text(TALK_TEXTS[int(self.rng.integers(len(TALK_TEXTS)))])

    def _open_text(self, lines):
        self.text = {"lines": lines, "typed": 0, "hold": int(self.rng.integers(20, 45))}

    def _try_step(self, direction):
        """Start walking one tile; -> False when the tile is taken by a character."""
        player = self.player
        if player.next_tile(direction) in self._occupied(exclude=player):
            self.waits += 1
            self.pause = 8
            if self.waits > 3:  # still in the way: find a way around it, or give up
                self.waits = 0
                target = self._plan_target()
                self.plan = self._route(target, allow=[target], blocked=self._occupied(exclude=player)) or []
                if not self.plan:
                    self.goal = None
            return False
        self.waits = 0
        self.plan.pop(0)
        player.start(direction)
        return True

    def _plan_target(self):
        """The tile where the current plan ends."""
        row, col = self.player.row, self.player.col
        for direction in self.plan:
            row, col = row + STEPS[direction][0], col + STEPS[direction][1]
        return row, col

    def _update_player(self):
        player = self.player
        if player.moving:
            if player.advance():
                self._arrive()
            return
        if self.pause > 0:
            self.pause -= 1
            if self.rng.random() < LOOK_CHANCE:
                player.facing = int(self.rng.integers(4))
            return
        if not self.plan:
            if self.goal is not None:
                self._finish_goal()
            else:
                self._choose_goal()
            return
        if player.facing != self.plan[0]:  # turn on the spot first, as in the games
            player.facing = self.plan[0]
            self.pause = TURN_FRAMES
            return
        if self._try_step(self.plan[0]):
            player.advance()

    def _arrive(self):
        """The player has just reached a tile: go through a door, walk on, or stop for a while."""
        player = self.player
        tile = (player.row, player.col)
        exit_ = self.areas[self.area].exits.get(tile)
        if exit_ is not None and self.goal is not None and self.goal[0] in ("door", "exit"):
            self.goal, self.plan = None, []
            self.transition = {"t": 0, "exit": exit_}
            return
        if not self.plan:
            return
        if self.rng.random() < STOP_CHANCE:
            self.pause = int(self.rng.integers(10, 40))
            return
        player.facing = self.plan[0]  # walking on, even round a corner, costs no time
        self._try_step(self.plan[0])

    def _update_npcs(self):
        for npc in self.areas[self.area].npcs:
            if npc.moving:
                npc.advance()
                continue
            npc.timer -= 1
            if npc.timer > 0:
                continue
            npc.timer = int(self.rng.integers(*NPC_IDLE))
            direction = int(self.rng.integers(4))
            npc.facing = direction
            if self.rng.random() < 0.3:  # only look around
                continue
            target = npc.next_tile(direction)
            area = self.areas[self.area]
            near_home = max(abs(target[0] - npc.home[0]), abs(target[1] - npc.home[1])) <= NPC_RANGE
            near_exit = any(abs(target[0] - row) + abs(target[1] - col) <= 1 for row, col in area.exits)
            if near_home and not near_exit and area.passable(target) and target not in self._occupied(exclude=npc):
                npc.start(direction)
                npc.advance()

    def _update_text(self):
        text = self.text
        if text["typed"] < sum(len(line) for line in text["lines"]):
            text["typed"] += 1
        else:
            text["hold"] -= 1
            if text["hold"] == 0:
                self.text = None

    def _update_transition(self):
        transition = self.transition
        transition["t"] += 1
        if transition["t"] == FADE_SWITCH:
            area, (row, col), direction = transition["exit"]
            self.area = area
            self.player = Walker(row, col, facing=direction, steps=self.player.steps)
            self.plan = [direction]  # step off the door or mat
            self.visits = int(self.rng.integers(2, 5))
        if transition["t"] == len(FADE):
            self.transition = None

    def _update(self):
        self.player.moved = False
        for npc in self.areas[self.area].npcs:
            npc.moved = False
        if self.transition is not None:
            self._update_transition()
        elif self.text is not None:
            self._update_text()
        else:
            self._update_player()
            self._update_npcs()

    # -- rendering ------------------------------------------------------------------------------

    def _camera(self):
        x, y = self.player.pixel()
        return x - PLAYER_SCREEN_X, y - PLAYER_SCREEN_Y

    def _render(self, camera):
        """-> (frame uint8 (144, 160) gray, moving NPCs on screen, NPCs on screen)."""
        area = self.areas[self.area]
        cam_x, cam_y = camera
        phase = (self.frame_index // ANIMATION_PERIOD) % PHASES
        screen = area.pixels[phase, cam_y:cam_y + SCREEN_HEIGHT, cam_x:cam_x + SCREEN_WIDTH].copy()  # (144, 160)
        visible = moving = 0
        for walker in sorted(area.npcs + [self.player], key=lambda w: w.pixel()[1]):  # nearer ones on top
            x, y = walker.pixel()
            sprite = sprites()[walker.look, walker.facing, walker.frame()]
            if _blit(screen, sprite, x - cam_x, y - cam_y - SPRITE_LIFT) and walker is not self.player:
                visible += 1
                moving += walker.moved
        if self.text is not None:
            _draw_text_box(screen, self.text["lines"], self.text["typed"],
                           arrow=self.text["typed"] == sum(map(len, self.text["lines"])) and phase % 2 == 0)
        if self.transition is not None:
            screen = np.maximum(screen.astype(np.int16) - FADE[self.transition["t"]], 0)
        return GRAY_LEVELS[screen], moving > 0, visible

    def step(self):
        """Advance the game by one frame (the first call shows the start) -> (frame, info dict)."""
        if self.frame_index > 0:
            self._update()
        camera = self._camera()
        frame, npc_moving, npcs_visible = self._render(camera)
        area_changed = self._previous_camera is None or self._previous_camera[0] != self.area
        d_x, d_y = (0, 0) if area_changed else (camera[0] - self._previous_camera[1],
                                                camera[1] - self._previous_camera[2])
        self._previous_camera = (self.area, *camera)
        info = {
            "camera_x": camera[0], "camera_y": camera[1], "camera_dx": d_x, "camera_dy": d_y,
            "player_moving": self.player.moved, "player_facing": self.player.facing,
            "player_tile_x": self.player.col, "player_tile_y": self.player.row,
            "npc_moving": npc_moving, "npcs_visible": npcs_visible, "overlay": self.text is not None,
            "transition": self.transition is not None, "area": self.area,
        }
        self.frame_index += 1
        return frame, info


def _blit(screen, sprite, x, y):
    """Draw sprite (16, 16) int8 (-1 transparent) with its top-left at (x, y), clipped -> True if on screen."""
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + TILE, screen.shape[0]), min(x + TILE, screen.shape[1])
    if top >= bottom or left >= right:
        return False
    part = sprite[top - y:bottom - y, left - x:right - x]
    region = screen[top:bottom, left:right]
    region[part >= 0] = part[part >= 0]
    return True


def _draw_text_box(screen, lines, typed, arrow):
    """Draw the text box over rows 96..143: a double frame, the first ``typed`` letters, a ▼ when done."""
    box = screen[TEXT_TOP:]
    box[:] = 0
    box[[1, 2, -3, -2]] = 3
    box[:, [1, 2, -3, -2]] = 3
    box[[0, -1]] = box[:, [0, -1]] = 0
    box[4, 5:-5] = box[-5, 5:-5] = 2
    box[5:-5, 4] = box[5:-5, -5] = 2
    for number, line in enumerate(lines):
        shown, typed = line[:max(typed, 0)], typed - len(line)
        for i, char in enumerate(shown):
            rows = np.array(FONT[char])[:, None] >> np.arange(4, -1, -1) & 1  # (7, 5)
            y, x = 14 + 16 * number, 8 + 8 * i
            box[y:y + 7, x:x + 5][rows == 1] = 3
    if arrow:
        for i in range(3):
            box[38 + i, 146 + i:151 - i] = 3


def render_gameplay(num_frames, seed=DEFAULT_SEED):
    """-> (frames uint8 (N, 144, 160) gray, meta: dict field -> (N,) array, see the module docstring)."""
    frames = np.empty((num_frames, SCREEN_HEIGHT, SCREEN_WIDTH), np.uint8)
    rows = []
    world = GameplayWorld(seed)
    for i in range(num_frames):
        frames[i], info = world.step()
        rows.append(info)
    return frames, _stack_meta(rows)


def _stack_meta(rows):
    return {name: np.array([row[name] for row in rows], dtype=dtype) for name, dtype in META_FIELDS.items()}


def write_gameplay_hdf5(path, num_frames=DEFAULT_NUM_FRAMES, seed=DEFAULT_SEED):
    """Render num_frames of the game and write them in the course format (atomically) -> meta dict."""
    attrs = {"generator": "model.video.gameplay", "version": VERSION, "seed": seed, "fps": FPS,
             "height": SCREEN_HEIGHT, "width": SCREEN_WIDTH, "gray_levels": GRAY_LEVELS}
    world = GameplayWorld(seed)
    rows = []
    with VideoWriter(path, attrs=attrs) as writer:
        for _ in range(num_frames):
            frame, info = world.step()
            writer.append(frame)
            rows.append(info)
        writer.meta.update(_stack_meta(rows))
    return writer.meta


def ensure_default_video(path, num_frames=DEFAULT_NUM_FRAMES, seed=DEFAULT_SEED):
    """Write the built-in video (num_frames of seed's game) to path unless a file is there -> True if written."""
    if Path(path).exists():
        return False
    write_gameplay_hdf5(path, num_frames, seed)
    return True
