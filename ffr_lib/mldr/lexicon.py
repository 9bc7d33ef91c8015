"""A small hand-built lexicon of general categories (hypernyms) for paraphrased queries.

Queries name a topic or an image through its category ("the photo with the animals", "what did
she say about food?") instead of the words used in the dialogue ("dog", "pizza"). Members are
general English words, not tuned to one dataset. A word may belong to several categories.
"""

from __future__ import annotations

from functools import cache, lru_cache

from pydantic import BaseModel

from ffr_lib.mldr.text import content_words, stem


class Category(BaseModel):
    name: str
    phrases: list[str]  # how a person would name the topic in a question
    image_phrases: list[str]  # how a person would describe a photo showing it
    members: list[str]  # words that put an utterance or a photo in the category
    group: str = ""  # coarse domain; near-miss negatives come from the same group


def _c(name: str, group: str, phrases: str, image_phrases: str, members: str) -> Category:
    return Category(
        name=name,
        group=group,
        phrases=[p.strip() for p in phrases.split(";")],
        image_phrases=[p.strip() for p in image_phrases.split(";")],
        members=members.split(),
    )


CATEGORIES: list[Category] = [
    _c(
        "pets",
        "living",
        "pets; their animals at home; the family pet",
        "an animal at home; a pet; somebody's pet",
        "dog dogs puppy puppies cat cats kitten kitty pet pets hamster rabbit bunny parrot goldfish "
        "pup doggy doggie labrador poodle retriever terrier",
    ),
    _c(
        "wildlife",
        "living",
        "wild animals; wildlife; animals in nature",
        "wild animals; some wildlife; a creature in the wild",
        "lion tiger bear elephant giraffe zebra monkey deer fox wolf squirrel animal animals "
        "wildlife zoo safari horse horses cow cows sheep goat pig farm camel kangaroo",
    ),
    _c(
        "birds",
        "living",
        "birds; birdwatching; feathered creatures",
        "a bird; some birds; something with feathers",
        "bird birds duck ducks eagle owl pigeon swan seagull gull chicken hen penguin sparrow",
    ),
    _c(
        "sea_life",
        "living",
        "sea creatures; marine life; life under water",
        "marine life; a sea creature; something from the ocean",
        "fish shark whale dolphin turtle crab lobster jellyfish seal octopus aquarium",
    ),
    _c(
        "insects",
        "living",
        "bugs; insects; creepy crawlies",
        "a bug; an insect; a small crawling thing",
        "insect insects bug bugs butterfly bee bees spider ant ants moth beetle mosquito",
    ),
    _c(
        "plants",
        "nature",
        "plants and flowers; greenery; gardening",
        "some greenery; plants; blossoms",
        "flower flowers plant plants rose roses tulip garden gardening tree trees leaf leaves "
        "bouquet grass houseplant cactus sunflower daisy lily orchid bush shrub",
    ),
    _c(
        "landscape",
        "nature",
        "the outdoors; nature and scenery; the landscape",
        "an outdoor scene; scenery; a view of nature",
        "mountain mountains hill hills lake river forest woods hike hiking hiked trail sky sunset "
        "sunrise view scenery nature park valley waterfall canyon outdoors camping camp tent",
    ),
    _c(
        "seaside",
        "nature",
        "a seaside trip; the coast; a day by the sea",
        "the coast; a seaside view; somewhere by the sea",
        "beach beaches ocean sea sand shore coast waves wave surf surfing swimming swim island "
        "sunbathing seaside",
    ),
    _c(
        "weather",
        "nature",
        "the weather; the climate outside; rain or shine",
        "the weather outside; a stormy or sunny sky",
        "weather rain raining rainy snow snowing snowy sunny storm cloudy cold hot heat wind windy "
        "temperature fog foggy",
    ),
    _c(
        "meals",
        "food",
        "food; a meal; eating out",
        "a meal; some food; a dish",
        "food pizza burger burgers sandwich pasta spaghetti salad steak meal dinner lunch "
        "breakfast restaurant dish dishes rice noodles soup sushi taco tacos chicken bbq grill "
        "grilled fries bread cheese egg eggs bacon platter plate cuisine snack snacks hotdog "
        "seafood shrimp meat",
    ),
    _c(
        "sweets",
        "food",
        "sweets; dessert; something sugary",
        "a dessert; something sweet; a treat",
        "cake cakes cupcake cupcakes cookie cookies chocolate candy dessert desserts pie "
        "icecream cream donut donuts doughnut pastry pastries muffin sugar sweet sweets baking "
        "baked bake",
    ),
    _c(
        "fruit_veg",
        "food",
        "fruit and vegetables; produce; healthy eating",
        "fresh produce; fruit; vegetables",
        "fruit fruits apple apples banana bananas orange oranges strawberry strawberries grape "
        "grapes lemon vegetable vegetables veggies tomato tomatoes carrot carrots potato potatoes "
        "lettuce broccoli berries mango pineapple watermelon greens",
    ),
    _c(
        "drinks",
        "food",
        "drinks; something to drink; beverages",
        "a drink; a beverage; a glass of something",
        "coffee tea beer wine juice drink drinks drinking soda cocktail cocktails water milk "
        "latte espresso smoothie bottle bottles glass mug cup teapot kettle whiskey vodka bar",
    ),
    _c(
        "cooking",
        "food",
        "cooking; making food at home; the kitchen",
        "a kitchen scene; cooking gear",
        "cook cooking cooked recipe recipes kitchen oven stove pan pot bake chef kitchenware "
        "cookware utensil tableware bowl knife fork spoon",
    ),
    _c(
        "vehicles",
        "things",
        "vehicles; getting around; transport",
        "a vehicle; some transport; something with wheels",
        "car cars truck trucks bus buses bike bikes bicycle motorcycle motorbike van train trains "
        "taxi drive driving drove vehicle vehicles wheel wheels tire jeep scooter",
    ),
    _c(
        "boats",
        "things",
        "boats; time on the water; sailing",
        "a boat; something on the water",
        "boat boats ship ships sail sailing yacht canoe kayak ferry cruise harbor dock",
    ),
    _c(
        "flying",
        "things",
        "flying; air travel; the airport",
        "an aircraft; something in the air",
        "plane planes airplane aircraft airport flight flights fly flying pilot helicopter jet",
    ),
    _c(
        "clothing",
        "things",
        "clothes; fashion; what to wear",
        "clothing; an outfit; something to wear",
        "dress dresses shirt shirts jeans jacket coat shoe shoes boots hat hats skirt suit "
        "outfit clothes clothing fashion sweater hoodie sneakers scarf sock socks wear wearing "
        "footwear trousers shorts",
    ),
    _c(
        "accessories",
        "things",
        "accessories; jewellery; small personal things",
        "an accessory; some jewellery",
        "necklace ring rings earring earrings bracelet watch jewelry jewellery sunglasses glasses "
        "bag handbag purse wallet backpack umbrella",
    ),
    _c(
        "electronics",
        "things",
        "gadgets; technology; electronics",
        "a gadget; some electronics; a device",
        "phone phones laptop computer computers tablet camera cameras tv television screen "
        "headphones keyboard mouse gadget gadgets console xbox playstation iphone android "
        "monitor speaker speakers drone charger",
    ),
    _c(
        "furniture",
        "home",
        "furniture; decorating a room; home interior",
        "a room interior; some furniture",
        "chair chairs table tables sofa couch bed beds desk shelf shelves lamp furniture room "
        "bedroom livingroom curtain curtains carpet rug cabinet",
    ),
    _c(
        "home",
        "home",
        "their home; the house; moving house",
        "a house; a home; a building",
        "house houses home apartment flat moving roof door window windows yard "
        "neighborhood neighbour neighbor rent building buildings porch backyard",
    ),
    _c(
        "city",
        "places",
        "the city; a town trip; urban life",
        "a street scene; the city; buildings in town",
        "city town street streets downtown skyscraper skyline traffic bridge tower square road "
        "roads sidewalk",
    ),
    _c(
        "travel",
        "places",
        "travel; a trip away; a holiday abroad",
        "a travel snapshot; somewhere on a trip",
        "trip travel traveling travelling vacation holiday holidays tour tourist visit visiting "
        "hotel resort abroad passport luggage suitcase journey",
    ),
    _c(
        "sports",
        "activities",
        "sports; a game or match; exercise",
        "a sporting scene; people playing a game",
        "football soccer basketball baseball tennis golf hockey volleyball game match team "
        "score scored goal player players stadium coach league sport sports ball",
    ),
    _c(
        "fitness",
        "activities",
        "fitness; working out; staying in shape",
        "someone exercising; a workout",
        "gym workout exercise running run ran jog jogging yoga fitness marathon training "
        "weights cycling swim lift",
    ),
    _c(
        "winter_sports",
        "activities",
        "winter sports; the slopes",
        "a winter sports scene; the slopes",
        "ski skiing snowboard snowboarding skate skating sled sledding slope slopes",
    ),
    _c(
        "music",
        "activities",
        "music; a band or a gig; songs",
        "a musical instrument; a band on stage",
        "music song songs band concert guitar piano drum drums singer sing singing album "
        "festival gig violin instrument dj playlist rap rock jazz",
    ),
    _c(
        "screen",
        "activities",
        "films and shows; something to watch",
        "a screen showing a film",
        "movie movies film films series netflix episode cinema theater theatre actor "
        "actress watch watching watched",
    ),
    _c(
        "reading",
        "activities",
        "books; reading; literature",
        "books; a stack of reading",
        "book books read reading novel novels author library magazine story stories poem",
    ),
    _c(
        "art",
        "activities",
        "art; painting and crafts; something creative",
        "an artwork; something handmade",
        "art paint painting paintings drawing draw drew sculpture museum gallery artist craft "
        "crafts photography photographer sketch statue",
    ),
    _c(
        "games",
        "activities",
        "games; playing for fun; toys",
        "a toy; a game",
        "toy toys videogame videogames puzzle puzzles board chess cards lego doll dolls teddy "
        "gaming gamer",
    ),
    _c(
        "celebration",
        "events",
        "a celebration; a party; a special occasion",
        "a celebration; a festive scene",
        "party parties birthday wedding anniversary celebrate celebrating celebration christmas "
        "halloween thanksgiving gift gifts present presents balloon balloons graduation bride "
        "groom ceremony",
    ),
    _c(
        "family",
        "people",
        "family; relatives; the folks",
        "family members; relatives together",
        "mom mother dad father brother sister son daughter family parents grandma grandpa "
        "grandmother grandfather aunt uncle cousin wife husband kids kid children child baby "
        "nephew niece",
    ),
    _c(
        "friends",
        "people",
        "friends; their social life; hanging out",
        "a group of friends; people hanging out",
        "friend friends buddy buddies girlfriend boyfriend roommate crowd hangout",
    ),
    _c(
        "work",
        "life",
        "work; their job; the office",
        "an office scene; someone at work",
        "work working job jobs office boss career colleague colleagues coworker meeting "
        "business company interview salary project shift promotion",
    ),
    _c(
        "school",
        "life",
        "school; studying; classes",
        "a classroom; study things",
        "school college university class classes exam exams study studying student students "
        "teacher homework degree course professor campus semester",
    ),
    _c(
        "health",
        "life",
        "health; feeling unwell; a doctor's visit",
        "a medical scene; something health related",
        "doctor hospital sick ill flu cold pain hurt injury medicine surgery nurse dentist "
        "health healthy sleep tired headache",
    ),
    _c(
        "shopping",
        "life",
        "shopping; buying things; money",
        "a shop; some purchases",
        "shop shopping store mall buy bought buying sale price money cheap expensive market "
        "grocery groceries purchase",
    ),
    _c(
        "tools",
        "things",
        "tools; fixing things; DIY",
        "some tools; a workbench",
        "tool tools hammer drill saw wrench screwdriver repair fix fixing fixed diy ladder",
    ),
]


@lru_cache(maxsize=1)
def _stem_index() -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    for category in CATEGORIES:
        for member in category.members:
            names = index.setdefault(stem(member), [])
            if category.name not in names:
                names.append(category.name)
    return {k: tuple(v) for k, v in index.items()}


def by_name() -> dict[str, Category]:
    return {c.name: c for c in CATEGORIES}


def categories_of_word(word: str) -> tuple[str, ...]:
    """Category names a single word belongs to (by stem)."""
    return _stem_index().get(stem(word), ())


def categories_of_text(text: str) -> set[str]:
    """Every category any content word of ``text`` belongs to."""
    found: set[str] = set()
    for word in content_words(text):
        found.update(categories_of_word(word))
    return found


@cache
def category_stems(category: str) -> frozenset[str]:
    """Stems of a category's members and of the content words of its phrases."""
    cat = by_name()[category]
    stems = {stem(m) for m in cat.members}
    for phrase in cat.phrases + cat.image_phrases:
        stems |= {stem(w) for w in content_words(phrase)}
    return frozenset(stems)
