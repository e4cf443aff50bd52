"""Build the "reasoning" category of the embedded multilingual preference benchmark.

Writes xlrm_lib/benchmark/items/reasoning.jsonl: 64 items (reasoning-001 .. reasoning-064),
8 problem types x 8 items, every item in en, es, de, fr, ru, zh, ko, ar
(format and rules: xlrm_lib/benchmark/AUTHORING.md).

Each item is a short word problem. "chosen" is a 2-3 step solution with the numbers shown and the
correct final answer; "rejected" has exactly the same wording and structure but one arithmetic or
logical slip (wrong product, +/- instead of -/+, off-by-one, swapped order, ...) that is carried
through to a wrong final answer. The step that holds the slip and the kind of slip are drawn with
the random generator, balanced over the steps of each problem type.

Numbers (and the slip) are drawn once per item and then rendered in every language, so the 8
versions of one id are parallel. The script is deterministic: it only uses random.Random(seed).
Before writing, it re-checks every item (independent recomputation of the correct answer, wrong
answer differs, length ratio rule, ...) and refuses to write if anything fails.

Run from the repository root:

    python tools/build_reasoning.py            # default seed 13
    python tools/build_reasoning.py --seed 13 --out xlrm_lib/benchmark/items/reasoning.jsonl
"""

import argparse
import itertools
import json
import random
import re
import string
import sys
from pathlib import Path

LANGS = ["en", "es", "de", "fr", "ru", "zh", "ko", "ar"]
ITEMS_PER_TYPE = 8
MINUS = "\u2212"  # the minus sign shown in solutions

# --------------------------------------------------------------------------------------------
# Names: index i has the same gender in every language (0-3 female, 4-7 male).
# Russian names carry (nominative, genitive, dative). French names start with a consonant (no elision).
# --------------------------------------------------------------------------------------------
NAMES = {
    "en": ["Emma", "Olivia", "Sophie", "Grace", "Jack", "Liam", "Noah", "Oscar"],
    "es": ["Lucía", "Carmen", "Elena", "Sofía", "Pablo", "Diego", "Javier", "Mateo"],
    "de": ["Anna", "Lena", "Marie", "Clara", "Jonas", "Felix", "Lukas", "Paul"],
    "fr": ["Camille", "Chloé", "Léa", "Manon", "Louis", "Lucas", "Théo", "Paul"],
    "ru": [("Анна", "Анны", "Анне"), ("Мария", "Марии", "Марии"), ("Ольга", "Ольги", "Ольге"),
           ("Елена", "Елены", "Елене"), ("Иван", "Ивана", "Ивану"), ("Павел", "Павла", "Павлу"),
           ("Миша", "Миши", "Мише"), ("Олег", "Олега", "Олегу")],
    "zh": ["小红", "丽丽", "小芳", "小雪", "小明", "小刚", "小军", "小强"],
    "ko": ["지은", "서연", "하은", "수아", "민준", "도윤", "현우", "지호"],
    "ar": ["فاطمة", "ليلى", "مريم", "سارة", "أحمد", "كريم", "يوسف", "خالد"],
}
FEMALE, MALE = [0, 1, 2, 3], [4, 5, 6, 7]


class Name:
    def __init__(self, lang, idx):
        raw = NAMES[lang][idx]
        forms = raw if isinstance(raw, tuple) else (raw, raw, raw)
        self.forms = {"nom": forms[0], "gen": forms[1], "dat": forms[2]}
        self.gender = "f" if idx in FEMALE else "m"

    def __str__(self):
        return self.forms["nom"]


# --------------------------------------------------------------------------------------------
# Grammar helpers used through format specs, e.g. "{t:usd}" -> noun form that agrees with t,
# "{name:은}" -> name + Korean particle, "{a:alto}" -> adjective in the gender of name a.
# --------------------------------------------------------------------------------------------
RU_NOUNS = {  # (1 / 21, 2-4 / 22-24, 5-20 / 25-30 ...)
    "notebook": ("тетрадь", "тетради", "тетрадей"),
    "pen": ("ручку", "ручки", "ручек"),
    "year": ("год", "года", "лет"),
    "times": ("раз", "раза", "раз"),
    "hour": ("час", "часа", "часов"),
    "min": ("минуту", "минуты", "минут"),
    "candy": ("конфета", "конфеты", "конфет"),
    "candy_acc": ("конфету", "конфеты", "конфет"),
}
AR_NOUNS = {  # (singular genitive: 100, 200...; plural: 3-10; singular accusative: 11-99)
    "usd": ("دولار", "دولارات", "دولارًا"),
    "notebook": ("دفتر", "دفاتر", "دفترًا"),
    "pen": ("قلم", "أقلام", "قلمًا"),
    "year": ("سنة", "سنوات", "سنة"),
    "times": ("ضعف", "أضعاف", "ضعفًا"),
    "hour": ("ساعة", "ساعات", "ساعة"),
    "min": ("دقيقة", "دقائق", "دقيقة"),
    "piece": ("قطعة", "قطع", "قطعة"),
    "friend": ("صديق", "أصدقاء", "صديقًا"),
}
KO_JOSA = {"은": ("은", "는"), "이": ("이", "가"), "을": ("을", "를"), "과": ("과", "와")}
GENDERED = {
    "es": {"alto": ("alto", "alta"), "bajo": ("bajo", "baja")},
    "fr": {"grand": ("grand", "grande"), "petit": ("petit", "petite"), "âgé": ("âgé", "âgée")},
    "ar": {"هو": ("هو", "هي")},
}


def ru_plural(n, forms):
    if n % 10 == 1 and n % 100 != 11:
        return forms[0]
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return forms[1]
    return forms[2]


def ar_counted(n, forms):
    if n in (1, 2):  # would need the singular/dual constructions; the generators never produce them
        raise ValueError(f"Arabic counted noun with n={n}")
    rest = n % 100
    if 3 <= rest <= 10:
        return forms[1]
    if 11 <= rest <= 99:
        return forms[2]
    return forms[0]


def ko_has_batchim(word):
    last = word[-1]
    return "가" <= last <= "힣" and (ord(last) - 0xAC00) % 28 != 0


def clock(lang, minutes):
    h, m = divmod(minutes, 60)
    if lang == "fr":
        return f"{h} h {m:02d}"
    if lang == "ko":
        return f"{h}시 {m}분" if m else f"{h}시"
    return f"{h}:{m:02d}"


class LangFormatter(string.Formatter):
    def __init__(self, lang):
        super().__init__()
        self.lang = lang

    def format_field(self, value, spec):
        lang = self.lang
        if isinstance(value, Name):
            if spec in ("", "nom", "gen", "dat"):
                return value.forms[spec or "nom"]
            if lang == "ko" and spec in KO_JOSA:
                pair = KO_JOSA[spec]
                return value.forms["nom"] + (pair[0] if ko_has_batchim(value.forms["nom"]) else pair[1])
            pair = GENDERED[lang][spec]
            return pair[0] if value.gender == "m" else pair[1]
        if spec == "clock":
            return clock(lang, value)
        if lang == "ru" and spec in RU_NOUNS:
            return ru_plural(value, RU_NOUNS[spec])
        if lang == "ar" and spec in AR_NOUNS:
            return ar_counted(value, AR_NOUNS[spec])
        return super().format_field(value, spec)


# --------------------------------------------------------------------------------------------
# Templates: TEMPLATES[subset][lang] = {"prompt": ..., "answer": ...}.
# The answer template is the same for chosen and rejected; only the numbers differ.
# --------------------------------------------------------------------------------------------
M = MINUS
TEMPLATES = {
    "math-shopping": {
        "en": {"prompt": "{name} buys {a} notebooks at {p} dollars each and {b} pens at {q} dollars each. She pays with a {m}-dollar bill. How much change should she get back?",
               "answer": "The notebooks cost {a} × {p} = {x1} dollars, and the pens cost {b} × {q} = {x2} dollars. Together that is {x1} + {x2} = {t} dollars. So her change is {m} " + M + " {t} = {c} dollars."},
        "es": {"prompt": "{name} compra {a} cuadernos a {p} euros cada uno y {b} bolígrafos a {q} euros cada uno. Paga con un billete de {m} euros. ¿Cuánto cambio le tienen que devolver?",
               "answer": "Los cuadernos cuestan {a} × {p} = {x1} euros y los bolígrafos, {b} × {q} = {x2} euros. En total son {x1} + {x2} = {t} euros. Por lo tanto, el cambio es {m} " + M + " {t} = {c} euros."},
        "de": {"prompt": "{name} kauft {a} Hefte zu je {p} Euro und {b} Stifte zu je {q} Euro. Sie bezahlt mit einem {m}-Euro-Schein. Wie viel Wechselgeld bekommt sie zurück?",
               "answer": "Die Hefte kosten {a} × {p} = {x1} Euro und die Stifte {b} × {q} = {x2} Euro. Zusammen sind das {x1} + {x2} = {t} Euro. Sie bekommt also {m} " + M + " {t} = {c} Euro zurück."},
        "fr": {"prompt": "{name} achète {a} cahiers à {p} euros pièce et {b} stylos à {q} euros pièce. Elle paie avec un billet de {m} euros. Combien doit-on lui rendre ?",
               "answer": "Les cahiers coûtent {a} × {p} = {x1} euros et les stylos {b} × {q} = {x2} euros. Au total, cela fait {x1} + {x2} = {t} euros. On doit donc lui rendre {m} " + M + " {t} = {c} euros."},
        "ru": {"prompt": "{name} покупает {a} {a:notebook} по {p} евро и {b} {b:pen} по {q} евро. Она расплачивается купюрой в {m} евро. Сколько сдачи она должна получить?",
               "answer": "Тетради стоят {a} × {p} = {x1} евро, а ручки — {b} × {q} = {x2} евро. Всего получается {x1} + {x2} = {t} евро. Значит, сдача составит {m} " + M + " {t} = {c} евро."},
        "zh": {"prompt": "{name}买了{a}本笔记本，每本{p}元，还买了{b}支笔，每支{q}元。她用一张{m}元的纸币付款，应该找回多少钱？",
               "answer": "笔记本一共是{a} × {p} = {x1}元，笔一共是{b} × {q} = {x2}元。两样合计{x1} + {x2} = {t}元。所以应该找回{m} " + M + " {t} = {c}元。"},
        "ko": {"prompt": "{name:은} 한 권에 {p}달러인 공책 {a}권과 한 자루에 {q}달러인 펜 {b}자루를 샀어요. {m}달러짜리 지폐로 냈다면 거스름돈은 얼마를 받아야 하나요?",
               "answer": "공책 값은 {a} × {p} = {x1}달러이고, 펜 값은 {b} × {q} = {x2}달러입니다. 합계는 {x1} + {x2} = {t}달러입니다. 따라서 거스름돈은 {m} " + M + " {t} = {c}달러입니다."},
        "ar": {"prompt": "تشتري {name} {a} {a:notebook} بسعر {p} {p:usd} للدفتر الواحد، و{b} {b:pen} بسعر {q} {q:usd} للقلم الواحد. وتدفع بورقة نقدية من فئة {m} {m:usd}. فكم يجب أن تسترد من الباقي؟",
               "answer": "ثمن الدفاتر {a} × {p} = {x1} {x1:usd}، وثمن الأقلام {b} × {q} = {x2} {x2:usd}. والمجموع {x1} + {x2} = {t} {t:usd}. إذن يكون الباقي {m} " + M + " {t} = {c} {c:usd}."},
    },
    "math-speed": {
        "en": {"prompt": "A train travels at {v} km/h for {h1} hours, then at {w} km/h for {h2} hours. The whole route is {D} km long. How many kilometres are still left to go?",
               "answer": "In the first part the train covers {v} × {h1} = {d1} km, and in the second part {w} × {h2} = {d2} km. That is {d1} + {d2} = {d} km in total. So {D} " + M + " {d} = {r} km are still left."},
        "es": {"prompt": "Un tren circula a {v} km/h durante {h1} horas y después a {w} km/h durante {h2} horas. El trayecto completo mide {D} km. ¿Cuántos kilómetros le quedan por recorrer?",
               "answer": "En el primer tramo el tren recorre {v} × {h1} = {d1} km, y en el segundo, {w} × {h2} = {d2} km. En total son {d1} + {d2} = {d} km. Por lo tanto, le quedan {D} " + M + " {d} = {r} km."},
        "de": {"prompt": "Ein Zug fährt {h1} Stunden lang mit {v} km/h und danach {h2} Stunden lang mit {w} km/h. Die gesamte Strecke ist {D} km lang. Wie viele Kilometer muss er noch fahren?",
               "answer": "Im ersten Abschnitt legt der Zug {v} × {h1} = {d1} km zurück, im zweiten {w} × {h2} = {d2} km. Insgesamt sind das {d1} + {d2} = {d} km. Es bleiben also noch {D} " + M + " {d} = {r} km."},
        "fr": {"prompt": "Un train roule à {v} km/h pendant {h1} heures, puis à {w} km/h pendant {h2} heures. Le trajet complet fait {D} km. Combien de kilomètres lui reste-t-il à parcourir ?",
               "answer": "Sur la première partie, le train parcourt {v} × {h1} = {d1} km, puis {w} × {h2} = {d2} km sur la seconde. Au total, cela fait {d1} + {d2} = {d} km. Il lui reste donc {D} " + M + " {d} = {r} km."},
        "ru": {"prompt": "Поезд идёт {h1} {h1:hour} со скоростью {v} км/ч, а затем {h2} {h2:hour} со скоростью {w} км/ч. Весь маршрут составляет {D} км. Сколько километров ему ещё осталось проехать?",
               "answer": "На первом участке поезд проходит {v} × {h1} = {d1} км, а на втором — {w} × {h2} = {d2} км. Всего это {d1} + {d2} = {d} км. Значит, осталось проехать {D} " + M + " {d} = {r} км."},
        "zh": {"prompt": "一列火车以每小时{v}千米的速度行驶了{h1}小时，然后以每小时{w}千米的速度行驶了{h2}小时。全程共{D}千米，还剩多少千米？",
               "answer": "第一段火车行驶了{v} × {h1} = {d1}千米，第二段行驶了{w} × {h2} = {d2}千米。一共行驶了{d1} + {d2} = {d}千米。所以还剩{D} " + M + " {d} = {r}千米。"},
        "ko": {"prompt": "기차가 시속 {v}km로 {h1}시간 동안 달린 뒤, 시속 {w}km로 {h2}시간 동안 달렸어요. 전체 노선이 {D}km라면 남은 거리는 몇 km인가요?",
               "answer": "첫 번째 구간에서 기차는 {v} × {h1} = {d1}km를 달렸고, 두 번째 구간에서는 {w} × {h2} = {d2}km를 달렸습니다. 모두 합하면 {d1} + {d2} = {d}km입니다. 따라서 남은 거리는 {D} " + M + " {d} = {r}km입니다."},
        "ar": {"prompt": "يسير قطار بسرعة {v} كم/ساعة لمدة {h1} {h1:hour}، ثم بسرعة {w} كم/ساعة لمدة {h2} {h2:hour}. ويبلغ طول المسار كله {D} كم. فكم كيلومترًا بقي عليه أن يقطع؟",
               "answer": "في الجزء الأول يقطع القطار {v} × {h1} = {d1} كم، وفي الجزء الثاني {w} × {h2} = {d2} كم. فالمجموع {d1} + {d2} = {d} كم. إذن بقي عليه {D} " + M + " {d} = {r} كم."},
    },
    "math-age": {
        "en": {"prompt": "{name} is {a} years old, and his father is {k} times as old as he is. What will the sum of their ages be in {n} years?",
               "answer": "The father is now {k} × {a} = {f} years old. In {n} years, {name} will be {a} + {n} = {s} and his father {f} + {n} = {g}. Together they will be {s} + {g} = {S} years old."},
        "es": {"prompt": "{name} tiene {a} años y su padre tiene {k} veces su edad. ¿Cuánto sumarán sus edades dentro de {n} años?",
               "answer": "Ahora el padre tiene {k} × {a} = {f} años. Dentro de {n} años, {name} tendrá {a} + {n} = {s} y su padre, {f} + {n} = {g}. Juntos sumarán {s} + {g} = {S} años."},
        "de": {"prompt": "{name} ist {a} Jahre alt, und sein Vater ist {k}-mal so alt wie er. Wie alt sind die beiden in {n} Jahren zusammen?",
               "answer": "Der Vater ist jetzt {k} × {a} = {f} Jahre alt. In {n} Jahren ist {name} {a} + {n} = {s} und sein Vater {f} + {n} = {g}. Zusammen sind sie dann {s} + {g} = {S} Jahre alt."},
        "fr": {"prompt": "{name} a {a} ans et son père a {k} fois son âge. Quelle sera la somme de leurs âges dans {n} ans ?",
               "answer": "Le père a aujourd'hui {k} × {a} = {f} ans. Dans {n} ans, {name} aura {a} + {n} = {s} ans et son père {f} + {n} = {g} ans. La somme de leurs âges sera alors {s} + {g} = {S} ans."},
        "ru": {"prompt": "{name:dat} {a} {a:year}, а его отец в {k} {k:times} старше. Сколько лет им будет вместе через {n} {n:year}?",
               "answer": "Сейчас отцу {k} × {a} = {f} {f:year}. Через {n} {n:year} {name:dat} будет {a} + {n} = {s}, а отцу — {f} + {n} = {g}. Вместе им будет {s} + {g} = {S} {S:year}."},
        "zh": {"prompt": "{name}今年{a}岁，爸爸的年龄是他的{k}倍。{n}年后，两人的年龄之和是多少岁？",
               "answer": "爸爸现在{k} × {a} = {f}岁。{n}年后，{name}将是{a} + {n} = {s}岁，爸爸将是{f} + {n} = {g}岁。两人的年龄之和是{s} + {g} = {S}岁。"},
        "ko": {"prompt": "{name:은} {a}살이고, 아버지의 나이는 {name}의 {k}배예요. {n}년 후에 두 사람의 나이를 합하면 몇 살인가요?",
               "answer": "아버지는 지금 {k} × {a} = {f}살입니다. {n}년 후에 {name:은} {a} + {n} = {s}살, 아버지는 {f} + {n} = {g}살이 됩니다. 두 사람의 나이를 합하면 {s} + {g} = {S}살입니다."},
        "ar": {"prompt": "عمر {name} {a} {a:year}، وعمر أبيه {k} {k:times} عمره. فكم سيكون مجموع عمريهما بعد {n} {n:year}؟",
               "answer": "عمر الأب الآن {k} × {a} = {f} {f:year}. وبعد {n} {n:year} سيكون عمر {name} {a} + {n} = {s}، وعمر أبيه {f} + {n} = {g}. فمجموع عمريهما {s} + {g} = {S} {S:year}."},
    },
    "math-sharing": {
        "en": {"prompt": "{name} has {n} candies and buys {b} more. She keeps {k} for herself and shares the rest equally among her {p} friends. How many candies does each friend get?",
               "answer": "First, {name} has {n} + {b} = {t} candies. After keeping {k}, she has {t} {op} {k} = {r} left to share. Each friend gets {r} ÷ {pd} = {e} candies."},
        "es": {"prompt": "{name} tiene {n} caramelos y compra {b} más. Se queda con {k} y reparte el resto a partes iguales entre sus {p} amigos. ¿Cuántos caramelos recibe cada amigo?",
               "answer": "Primero, {name} tiene {n} + {b} = {t} caramelos. Después de quedarse con {k}, le quedan {t} {op} {k} = {r} para repartir. Cada amigo recibe {r} ÷ {pd} = {e} caramelos."},
        "de": {"prompt": "{name} hat {n} Bonbons und kauft {b} weitere dazu. {k} behält sie selbst, den Rest verteilt sie gleichmäßig an ihre {p} Freunde. Wie viele Bonbons bekommt jeder Freund?",
               "answer": "Zuerst hat {name} {n} + {b} = {t} Bonbons. Nachdem sie {k} behalten hat, bleiben {t} {op} {k} = {r} zum Verteilen. Jeder Freund bekommt {r} ÷ {pd} = {e} Bonbons."},
        "fr": {"prompt": "{name} a {n} bonbons et en achète {b} de plus. Elle en garde {k} pour elle et partage le reste à parts égales entre ses {p} amis. Combien de bonbons chaque ami reçoit-il ?",
               "answer": "D'abord, {name} a {n} + {b} = {t} bonbons. Après en avoir gardé {k}, il lui en reste {t} {op} {k} = {r} à partager. Chaque ami reçoit {r} ÷ {pd} = {e} bonbons."},
        "ru": {"prompt": "У {name:gen} {n} {n:candy}, и она покупает ещё {b}. {k} она оставляет себе, а остальные поровну раздаёт своим {p} друзьям. Сколько конфет получит каждый друг?",
               "answer": "Сначала у {name:gen} {n} + {b} = {t} {t:candy}. Оставив себе {k}, она раздаёт {t} {op} {k} = {r} {r:candy_acc}. Каждый друг получит {r} ÷ {pd} = {e} {e:candy_acc}."},
        "zh": {"prompt": "{name}有{n}颗糖，又买了{b}颗。她自己留下{k}颗，把剩下的平均分给她的{p}个朋友。每个朋友能分到多少颗糖？",
               "answer": "首先，{name}一共有{n} + {b} = {t}颗糖。自己留下{k}颗后，还剩{t} {op} {k} = {r}颗可以分。每个朋友分到{r} ÷ {pd} = {e}颗。"},
        "ko": {"prompt": "{name:은} 사탕 {n}개를 가지고 있었고, {b}개를 더 샀어요. 자기 몫으로 {k}개를 남기고, 나머지를 친구 {p}명에게 똑같이 나눠 주었어요. 친구 한 명이 받는 사탕은 몇 개인가요?",
               "answer": "먼저 {name:이} 가진 사탕은 {n} + {b} = {t}개입니다. 자기 몫 {k}개를 남기면 나눠 줄 사탕은 {t} {op} {k} = {r}개입니다. 따라서 친구 한 명은 {r} ÷ {pd} = {e}개를 받습니다."},
        "ar": {"prompt": "لدى {name} {n} {n:piece} من الحلوى، واشترت {b} {b:piece} أخرى. احتفظت بـ{k} {k:piece} لنفسها، ووزعت الباقي بالتساوي على {p} {p:friend} لها. فكم قطعة يحصل عليها كل صديق؟",
               "answer": "أولًا، يصبح لدى {name} {n} + {b} = {t} {t:piece}. وبعد أن تحتفظ بـ{k}، يبقى {t} {op} {k} = {r} {r:piece} للتوزيع. إذن يحصل كل صديق على {r} ÷ {pd} = {e} {e:piece}."},
    },
    "math-percent": {
        "en": {"prompt": "A jacket costs {P} dollars. It is sold at a {d}% discount, and delivery costs {f} dollars. How much does the jacket cost in total with delivery?",
               "answer": "The discount is {P} × {d} ÷ 100 = {x} dollars. After the discount, the jacket costs {P} {op1} {x} = {y} dollars. Adding delivery gives {y} {op2} {f} = {z} dollars."},
        "es": {"prompt": "Una chaqueta cuesta {P} euros. Tiene un descuento del {d} % y el envío cuesta {f} euros. ¿Cuánto cuesta la chaqueta en total con el envío?",
               "answer": "El descuento es de {P} × {d} ÷ 100 = {x} euros. Con el descuento, la chaqueta cuesta {P} {op1} {x} = {y} euros. Sumando el envío, el total es {y} {op2} {f} = {z} euros."},
        "de": {"prompt": "Eine Jacke kostet {P} Euro. Sie wird mit {d} % Rabatt verkauft, und der Versand kostet {f} Euro. Wie viel kostet die Jacke insgesamt mit Versand?",
               "answer": "Der Rabatt beträgt {P} × {d} ÷ 100 = {x} Euro. Nach dem Rabatt kostet die Jacke {P} {op1} {x} = {y} Euro. Mit Versand ergibt sich {y} {op2} {f} = {z} Euro."},
        "fr": {"prompt": "Une veste coûte {P} euros. Elle bénéficie d'une remise de {d} %, et la livraison coûte {f} euros. Combien coûte la veste au total, livraison comprise ?",
               "answer": "La remise est de {P} × {d} ÷ 100 = {x} euros. Après la remise, la veste coûte {P} {op1} {x} = {y} euros. Avec la livraison, le total est de {y} {op2} {f} = {z} euros."},
        "ru": {"prompt": "Куртка стоит {P} евро. На неё действует скидка {d} %, а доставка стоит {f} евро. Сколько будет стоить куртка вместе с доставкой?",
               "answer": "Скидка составляет {P} × {d} ÷ 100 = {x} евро. Со скидкой куртка стоит {P} {op1} {x} = {y} евро. С учётом доставки получается {y} {op2} {f} = {z} евро."},
        "zh": {"prompt": "一件夹克原价{P}元，现在降价{d}%，另外运费是{f}元。加上运费，这件夹克一共要多少钱？",
               "answer": "优惠金额是{P} × {d} ÷ 100 = {x}元。降价后夹克的价格是{P} {op1} {x} = {y}元。加上运费，一共是{y} {op2} {f} = {z}元。"},
        "ko": {"prompt": "재킷의 가격은 {P}달러예요. {d}% 할인을 받고, 배송비는 {f}달러예요. 배송비를 포함하면 재킷은 모두 얼마인가요?",
               "answer": "할인 금액은 {P} × {d} ÷ 100 = {x}달러입니다. 할인 후 재킷 가격은 {P} {op1} {x} = {y}달러입니다. 배송비를 더하면 {y} {op2} {f} = {z}달러입니다."},
        "ar": {"prompt": "سعر سترة {P} {P:usd}، وعليها خصم بنسبة {d}%، وتكلفة التوصيل {f} {f:usd}. فكم يبلغ سعر السترة الإجمالي مع التوصيل؟",
               "answer": "قيمة الخصم {P} × {d} ÷ 100 = {x} {x:usd}. وبعد الخصم يصبح سعر السترة {P} {op1} {x} = {y} {y:usd}. وبإضافة التوصيل يكون المجموع {y} {op2} {f} = {z} {z:usd}."},
    },
    "math-time": {
        "en": {"prompt": "{name} leaves home at {T0:clock}. The bus ride to the station takes {t1} minutes, then she waits {t2} minutes for her train, and the train journey takes {t3} minutes. At what time does she arrive?",
               "answer": "The bus reaches the station {t1} minutes after {T0:clock}, at {T1:clock}. After waiting {t2} minutes, she boards the train at {T2:clock}. She arrives {t3} minutes later, at {T3:clock}."},
        "es": {"prompt": "{name} sale de casa a las {T0:clock}. El trayecto en autobús hasta la estación dura {t1} minutos, después espera el tren {t2} minutos y el viaje en tren dura {t3} minutos. ¿A qué hora llega?",
               "answer": "El autobús llega a la estación {t1} minutos después de las {T0:clock}, es decir, a las {T1:clock}. Tras esperar {t2} minutos, sube al tren a las {T2:clock}. Llega {t3} minutos más tarde, a las {T3:clock}."},
        "de": {"prompt": "{name} verlässt das Haus um {T0:clock} Uhr. Die Busfahrt zum Bahnhof dauert {t1} Minuten, dann wartet sie {t2} Minuten auf den Zug, und die Zugfahrt dauert {t3} Minuten. Um wie viel Uhr kommt sie an?",
               "answer": "Der Bus erreicht den Bahnhof {t1} Minuten nach {T0:clock} Uhr, also um {T1:clock} Uhr. Nach {t2} Minuten Wartezeit steigt sie um {T2:clock} Uhr in den Zug. Sie kommt {t3} Minuten später an, um {T3:clock} Uhr."},
        "fr": {"prompt": "{name} quitte la maison à {T0:clock}. Le trajet en bus jusqu'à la gare dure {t1} minutes, puis elle attend son train {t2} minutes, et le trajet en train dure {t3} minutes. À quelle heure arrive-t-elle ?",
               "answer": "Le bus arrive à la gare {t1} minutes après {T0:clock}, soit à {T1:clock}. Après {t2} minutes d'attente, elle monte dans le train à {T2:clock}. Elle arrive {t3} minutes plus tard, à {T3:clock}."},
        "ru": {"prompt": "{name} выходит из дома в {T0:clock}. Поездка на автобусе до вокзала занимает {t1} {t1:min}, затем она {t2} {t2:min} ждёт поезд, а поездка на поезде длится {t3} {t3:min}. Во сколько она приедет?",
               "answer": "Автобус приезжает на вокзал через {t1} {t1:min} после {T0:clock}, то есть в {T1:clock}. Подождав {t2} {t2:min}, она садится в поезд в {T2:clock}. Ещё через {t3} {t3:min}, в {T3:clock}, она приезжает на место."},
        "zh": {"prompt": "{name}在{T0:clock}出门。坐公交车到火车站需要{t1}分钟，然后她等了{t2}分钟火车，坐火车又用了{t3}分钟。她几点到达？",
               "answer": "公交车在{T0:clock}之后{t1}分钟到达火车站，也就是{T1:clock}。等了{t2}分钟后，她在{T2:clock}上了火车。再过{t3}分钟，她在{T3:clock}到达。"},
        "ko": {"prompt": "{name:은} {T0:clock}에 집을 나섰어요. 역까지 버스로 {t1}분이 걸리고, 기차를 {t2}분 동안 기다린 뒤, 기차로 {t3}분을 더 갔어요. 몇 시에 도착했을까요?",
               "answer": "버스는 {T0:clock}에서 {t1}분 뒤인 {T1:clock}에 역에 도착합니다. {t2}분을 기다린 뒤 {T2:clock}에 기차를 탑니다. 그리고 {t3}분 뒤인 {T3:clock}에 도착합니다."},
        "ar": {"prompt": "تخرج {name} من المنزل في الساعة {T0:clock}. تستغرق الرحلة بالحافلة إلى المحطة {t1} {t1:min}، ثم تنتظر القطار {t2} {t2:min}، وتستغرق الرحلة بالقطار {t3} {t3:min}. في أي ساعة تصل؟",
               "answer": "تصل الحافلة إلى المحطة بعد {t1} {t1:min} من الساعة {T0:clock}، أي في الساعة {T1:clock}. وبعد انتظار {t2} {t2:min} تركب القطار في الساعة {T2:clock}. ثم تصل بعد {t3} {t3:min}، أي في الساعة {T3:clock}."},
    },
    "math-area": {
        "en": {"prompt": "A rectangular room is {L} m long and {W} m wide. A square rug with {s} m sides is placed on the floor. How many square metres of floor are not covered by the rug?",
               "answer": "The room's area is {L} × {W} = {A} m². The rug covers {s} × {s2} = {R} m². So the uncovered floor is {A} {op} {R} = {U} m²."},
        "es": {"prompt": "Una habitación rectangular mide {L} m de largo y {W} m de ancho. En el suelo hay una alfombra cuadrada de {s} m de lado. ¿Cuántos metros cuadrados de suelo quedan sin cubrir?",
               "answer": "El área de la habitación es {L} × {W} = {A} m². La alfombra cubre {s} × {s2} = {R} m². Por lo tanto, quedan sin cubrir {A} {op} {R} = {U} m²."},
        "de": {"prompt": "Ein rechteckiges Zimmer ist {L} m lang und {W} m breit. Auf dem Boden liegt ein quadratischer Teppich mit {s} m Seitenlänge. Wie viele Quadratmeter Boden sind nicht bedeckt?",
               "answer": "Die Fläche des Zimmers beträgt {L} × {W} = {A} m². Der Teppich bedeckt {s} × {s2} = {R} m². Unbedeckt bleiben also {A} {op} {R} = {U} m²."},
        "fr": {"prompt": "Une pièce rectangulaire mesure {L} m de long et {W} m de large. Un tapis carré de {s} m de côté est posé sur le sol. Combien de mètres carrés de sol ne sont pas couverts ?",
               "answer": "L'aire de la pièce est de {L} × {W} = {A} m². Le tapis couvre {s} × {s2} = {R} m². La surface non couverte est donc de {A} {op} {R} = {U} m²."},
        "ru": {"prompt": "Прямоугольная комната имеет длину {L} м и ширину {W} м. На полу лежит квадратный ковёр со стороной {s} м. Сколько квадратных метров пола не покрыто ковром?",
               "answer": "Площадь комнаты равна {L} × {W} = {A} м². Ковёр занимает {s} × {s2} = {R} м². Значит, непокрытой остаётся площадь {A} {op} {R} = {U} м²."},
        "zh": {"prompt": "一个长方形房间长{L}米、宽{W}米。地上铺了一块边长{s}米的正方形地毯。没有被地毯盖住的地面有多少平方米？",
               "answer": "房间的面积是{L} × {W} = {A}平方米。地毯的面积是{s} × {s2} = {R}平方米。所以没有被盖住的地面是{A} {op} {R} = {U}平方米。"},
        "ko": {"prompt": "직사각형 방의 길이는 {L}m, 너비는 {W}m예요. 바닥에 한 변이 {s}m인 정사각형 러그를 깔았어요. 러그로 덮이지 않은 바닥은 몇 제곱미터인가요?",
               "answer": "방의 넓이는 {L} × {W} = {A}m²입니다. 러그의 넓이는 {s} × {s2} = {R}m²입니다. 따라서 덮이지 않은 바닥은 {A} {op} {R} = {U}m²입니다."},
        "ar": {"prompt": "غرفة مستطيلة طولها {L} م وعرضها {W} م. وُضعت على أرضيتها سجادة مربعة طول ضلعها {s} م. فكم مترًا مربعًا من الأرضية لا تغطيه السجادة؟",
               "answer": "مساحة الغرفة {L} × {W} = {A} م². وتغطي السجادة {s} × {s2} = {R} م². إذن المساحة غير المغطاة {A} {op} {R} = {U} م²."},
    },
}

# logic-order: one block per language and relation ("height" or "age").
#   more/less: a fact "x is taller/shorter than y"; step1/step2/step3: the three solution sentences;
#   q: the asked position (0 = tallest ... 3 = shortest) as used in the prompt;
#   qa: the same phrase in the answer, as (masculine, feminine) where the language needs agreement.
LOGIC = {
    "en": {
        "prompt": "{intro} {facts} Who is {q}?",
        "height": {"intro": "Four friends compare their heights.",
                   "more": "{x} is taller than {y}", "less": "{x} is shorter than {y}",
                   "step1": "{a} is taller than {b}, and {b} is taller than {c}.",
                   "step2": "Since {x} is shorter than {y}, the order from tallest to shortest is {order}.",
                   "step3": "So {qa} is {ans}.",
                   "q": ["the tallest", "the second tallest", "the third tallest", "the shortest"]},
        "age": {"intro": "Four friends compare their ages.",
                "more": "{x} is older than {y}", "less": "{x} is younger than {y}",
                "step1": "{a} is older than {b}, and {b} is older than {c}.",
                "step2": "Since {x} is younger than {y}, the order from oldest to youngest is {order}.",
                "step3": "So {qa} is {ans}.",
                "q": ["the oldest", "the second oldest", "the third oldest", "the youngest"]},
    },
    "es": {
        "prompt": "{intro} {facts} ¿Quién es {q}?",
        "height": {"intro": "Cuatro amigos comparan su estatura.",
                   "more": "{x} es más {x:alto} que {y}", "less": "{x} es más {x:bajo} que {y}",
                   "step1": "{a} es más {a:alto} que {b}, y {b} es más {b:alto} que {c}.",
                   "step2": "Como {x} es más {x:bajo} que {y}, el orden de mayor a menor estatura es {order}.",
                   "step3": "Por lo tanto, {qa} es {ans}.",
                   "q": ["la persona más alta", "la segunda persona más alta", "la tercera persona más alta", "la persona más baja"]},
        "age": {"intro": "Cuatro amigos comparan sus edades.",
                "more": "{x} es mayor que {y}", "less": "{x} es menor que {y}",
                "step1": "{a} es mayor que {b}, y {b} es mayor que {c}.",
                "step2": "Como {x} es menor que {y}, el orden de mayor a menor edad es {order}.",
                "step3": "Por lo tanto, {qa} es {ans}.",
                "q": ["la persona de más edad", "la segunda persona de más edad", "la tercera persona de más edad", "la persona más joven"]},
    },
    "de": {
        "prompt": "{intro} {facts} Wer ist {q}?",
        "height": {"intro": "Vier Freunde vergleichen ihre Körpergröße.",
                   "more": "{x} ist größer als {y}", "less": "{x} ist kleiner als {y}",
                   "step1": "{a} ist größer als {b}, und {b} ist größer als {c}.",
                   "step2": "Da {x} kleiner als {y} ist, lautet die Reihenfolge von groß nach klein: {order}.",
                   "step3": "Also ist {ans} {qa}.",
                   "q": ["am größten", "am zweitgrößten", "am drittgrößten", "am kleinsten"]},
        "age": {"intro": "Vier Freunde vergleichen ihr Alter.",
                "more": "{x} ist älter als {y}", "less": "{x} ist jünger als {y}",
                "step1": "{a} ist älter als {b}, und {b} ist älter als {c}.",
                "step2": "Da {x} jünger als {y} ist, lautet die Reihenfolge von alt nach jung: {order}.",
                "step3": "Also ist {ans} {qa}.",
                "q": ["am ältesten", "am zweitältesten", "am drittältesten", "am jüngsten"]},
    },
    "fr": {
        "prompt": "{intro} {facts} Qui est {q} ?",
        "height": {"intro": "Quatre amis comparent leur taille.",
                   "more": "{x} est plus {x:grand} que {y}", "less": "{x} est plus {x:petit} que {y}",
                   "step1": "{a} est plus {a:grand} que {b}, et {b} est plus {b:grand} que {c}.",
                   "step2": "Comme {x} est plus {x:petit} que {y}, l'ordre du plus grand au plus petit est {order}.",
                   "step3": "Donc, {qa} est {ans}.",
                   "q": ["la personne la plus grande", "la deuxième personne la plus grande", "la troisième personne la plus grande", "la personne la plus petite"]},
        "age": {"intro": "Quatre amis comparent leur âge.",
                "more": "{x} est plus {x:âgé} que {y}", "less": "{x} est plus jeune que {y}",
                "step1": "{a} est plus {a:âgé} que {b}, et {b} est plus {b:âgé} que {c}.",
                "step2": "Comme {x} est plus jeune que {y}, l'ordre du plus âgé au plus jeune est {order}.",
                "step3": "Donc, {qa} est {ans}.",
                "q": ["la personne la plus âgée", "la deuxième personne la plus âgée", "la troisième personne la plus âgée", "la personne la plus jeune"]},
    },
    "ru": {
        "prompt": "{intro} {facts} Кто из них {q}?",
        "height": {"intro": "Четверо друзей сравнивают свой рост.",
                   "more": "{x} выше, чем {y}", "less": "{x} ниже, чем {y}",
                   "step1": "{a} выше, чем {b}, а {b} выше, чем {c}.",
                   "step2": "Поскольку {x} ниже, чем {y}, по убыванию роста получаем: {order}.",
                   "step3": "Значит, {qa} — {ans}.",
                   "q": ["самый высокий", "второй по росту", "третий по росту", "самый низкий"],
                   "qa": [("самый высокий", "самая высокая"), ("второй по росту", "вторая по росту"),
                          ("третий по росту", "третья по росту"), ("самый низкий", "самая низкая")]},
        "age": {"intro": "Четверо друзей сравнивают свой возраст.",
                "more": "{x} старше, чем {y}", "less": "{x} младше, чем {y}",
                "step1": "{a} старше, чем {b}, а {b} старше, чем {c}.",
                "step2": "Поскольку {x} младше, чем {y}, по убыванию возраста получаем: {order}.",
                "step3": "Значит, {qa} — {ans}.",
                "q": ["самый старший", "второй по старшинству", "третий по старшинству", "самый младший"],
                "qa": [("самый старший", "самая старшая"), ("второй по старшинству", "вторая по старшинству"),
                       ("третий по старшинству", "третья по старшинству"), ("самый младший", "самая младшая")]},
    },
    "zh": {
        "prompt": "{intro}{facts}谁是{q}？",
        "height": {"intro": "四个朋友在比身高。",
                   "more": "{x}比{y}高", "less": "{x}比{y}矮",
                   "step1": "{a}比{b}高，{b}又比{c}高。",
                   "step2": "因为{x}比{y}矮，所以从高到矮的顺序是{order}。",
                   "step3": "因此，{qa}是{ans}。",
                   "q": ["最高的人", "第二高的人", "第三高的人", "最矮的人"]},
        "age": {"intro": "四个朋友在比年龄。",
                "more": "{x}比{y}年纪大", "less": "{x}比{y}年纪小",
                "step1": "{a}比{b}年纪大，{b}又比{c}年纪大。",
                "step2": "因为{x}比{y}年纪小，所以按年龄从大到小的顺序是{order}。",
                "step3": "因此，{qa}是{ans}。",
                "q": ["年纪最大的人", "年纪第二大的人", "年纪第三大的人", "年纪最小的人"]},
    },
    "ko": {
        "prompt": "{intro} {facts} {q}은 누구인가요?",
        "height": {"intro": "네 친구가 키를 비교하고 있어요.",
                   "more": "{x:은} {y}보다 키가 커요", "less": "{x:은} {y}보다 키가 작아요",
                   "step1": "{a:은} {b}보다 키가 크고, {b:은} {c}보다 키가 큽니다.",
                   "step2": "{x:은} {y}보다 키가 작으므로, 키가 큰 순서는 {order}입니다.",
                   "step3": "따라서 {qa}은 {ans}입니다.",
                   "q": ["키가 가장 큰 사람", "키가 두 번째로 큰 사람", "키가 세 번째로 큰 사람", "키가 가장 작은 사람"]},
        "age": {"intro": "네 친구가 나이를 비교하고 있어요.",
                "more": "{x:은} {y}보다 나이가 많아요", "less": "{x:은} {y}보다 나이가 적어요",
                "step1": "{a:은} {b}보다 나이가 많고, {b:은} {c}보다 나이가 많습니다.",
                "step2": "{x:은} {y}보다 나이가 적으므로, 나이가 많은 순서는 {order}입니다.",
                "step3": "따라서 {qa}은 {ans}입니다.",
                "q": ["나이가 가장 많은 사람", "나이가 두 번째로 많은 사람", "나이가 세 번째로 많은 사람", "나이가 가장 적은 사람"]},
    },
    "ar": {
        "prompt": "{intro} {facts} من هو {q} بينهم؟",
        "height": {"intro": "يقارن أربعة أصدقاء أطوالهم.",
                   "more": "{x} أطول من {y}", "less": "{x} أقصر من {y}",
                   "step1": "{a} أطول من {b}، و{b} أطول من {c}.",
                   "step2": "وبما أن {x} أقصر من {y}، فإن الترتيب من الأطول إلى الأقصر هو: {order}.",
                   "step3": "إذن {qa} {ans:هو} {ans}.",
                   "q": ["الأطول", "الثاني من حيث الطول", "الثالث من حيث الطول", "الأقصر"],
                   "qa": [("الأطول", "الأطول"), ("الثاني من حيث الطول", "الثانية من حيث الطول"),
                          ("الثالث من حيث الطول", "الثالثة من حيث الطول"), ("الأقصر", "الأقصر")]},
        "age": {"intro": "يقارن أربعة أصدقاء أعمارهم.",
                "more": "{x} أكبر سنًا من {y}", "less": "{x} أصغر سنًا من {y}",
                "step1": "{a} أكبر سنًا من {b}، و{b} أكبر سنًا من {c}.",
                "step2": "وبما أن {x} أصغر سنًا من {y}، فإن الترتيب من الأكبر سنًا إلى الأصغر هو: {order}.",
                "step3": "إذن {qa} {ans:هو} {ans}.",
                "q": ["الأكبر سنًا", "الثاني من حيث العمر", "الثالث من حيث العمر", "الأصغر سنًا"],
                "qa": [("الأكبر سنًا", "الأكبر سنًا"), ("الثاني من حيث العمر", "الثانية من حيث العمر"),
                       ("الثالث من حيث العمر", "الثالثة من حيث العمر"), ("الأصغر سنًا", "الأصغر سنًا")]},
    },
}
LIST_JOIN = {  # how the ordered list of four names is written
    "en": lambda n: ", ".join(n), "es": lambda n: ", ".join(n[:-1]) + " y " + n[-1],
    "de": lambda n: ", ".join(n[:-1]) + " und " + n[-1], "fr": lambda n: ", ".join(n[:-1]) + " et " + n[-1],
    "ru": lambda n: ", ".join(n), "zh": lambda n: "、".join(n), "ko": lambda n: ", ".join(n),
    "ar": lambda n: "، ثم ".join(n),
}
SENT_END = {"zh": "。"}  # fact sentences in the prompt; other languages use ". "


# --------------------------------------------------------------------------------------------
# Problem types. For each: draw_*(rng) -> params; slips_*(params) -> [(step, kind, delta)];
# solve_*(params, slip) -> answer fields (+ "final", + "_values" = every number shown in the answer).
# A slip changes one step; later steps are computed correctly from the wrong value.
# --------------------------------------------------------------------------------------------
def delta(slip, step):
    return slip[2] if slip and slip[0] == step and slip[1] != "op" else 0


def is_op(slip, step):
    return bool(slip) and slip[0] == step and slip[1] == "op"


def draw_shopping(rng):
    a, p, b, q = rng.randint(3, 6), rng.randint(3, 9), rng.randint(3, 6), rng.randint(3, 5)
    total = a * p + b * q
    return {"name": rng.choice(FEMALE), "a": a, "p": p, "b": b, "q": q, "m": 50 if total <= 35 else 100}


def slips_shopping(x):
    return [(1, "mul", x["p"]), (1, "mul", -x["p"]), (2, "mul", x["q"]), (2, "mul", -x["q"]),
            (3, "add", 10), (3, "add", -10), (4, "sub", 10), (4, "sub", -10)]


def solve_shopping(x, slip=None):
    x1 = x["a"] * x["p"] + delta(slip, 1)
    x2 = x["b"] * x["q"] + delta(slip, 2)
    t = x1 + x2 + delta(slip, 3)
    c = x["m"] - t + delta(slip, 4)
    return {"x1": x1, "x2": x2, "t": t, "c": c, "final": c, "_values": [x1, x2, t, c]}


def draw_speed(rng):
    while True:
        v, w = rng.randrange(45, 100, 5), rng.randrange(45, 100, 5)
        h1, h2 = rng.randint(3, 5), rng.randint(3, 4)
        r = rng.randrange(35, 160, 5)
        D = v * h1 + w * h2 + r
        if D < 1000 and v != w:
            return {"v": v, "h1": h1, "w": w, "h2": h2, "D": D}


def slips_speed(x):
    return [(1, "mul", x["v"]), (1, "mul", -x["v"]), (1, "add", 10), (2, "mul", x["w"]), (2, "mul", -x["w"]),
            (2, "add", -10), (3, "add", 10), (3, "add", -10), (3, "add", 100), (3, "add", -100),
            (4, "sub", 10), (4, "sub", -10)]


def solve_speed(x, slip=None):
    d1 = x["v"] * x["h1"] + delta(slip, 1)
    d2 = x["w"] * x["h2"] + delta(slip, 2)
    d = d1 + d2 + delta(slip, 3)
    r = x["D"] - d + delta(slip, 4)
    return {"d1": d1, "d2": d2, "d": d, "r": r, "final": r, "_values": [d1, d2, d, r]}


def draw_age(rng):
    while True:
        a, k, n = rng.randint(6, 12), rng.randint(3, 5), rng.randint(3, 9)
        if 28 <= k * a <= 50 and k * a - a >= 22:
            return {"name": rng.choice(MALE), "a": a, "k": k, "n": n}


def slips_age(x):
    return [(1, "mul", x["a"]), (1, "mul", -x["a"]), (2, "add", 1), (2, "add", -1),
            (3, "add", 1), (3, "add", -10), (4, "add", 10), (4, "add", -10)]


def solve_age(x, slip=None):
    f = x["k"] * x["a"] + delta(slip, 1)
    s = x["a"] + x["n"] + delta(slip, 2)
    g = f + x["n"] + delta(slip, 3)
    S = s + g + delta(slip, 4)
    return {"f": f, "s": s, "g": g, "S": S, "final": S, "_values": [f, s, g, S]}


def draw_sharing(rng):
    while True:
        p, e, k, b = rng.randint(3, 6), rng.randint(3, 9), rng.randint(3, 8), rng.randint(5, 15)
        t = p * e + k
        if t - b >= 8:
            return {"name": rng.choice(FEMALE), "n": t - b, "b": b, "k": k, "p": p}


def slips_sharing(x):
    p = x["p"]
    out = [(1, "add", p), (1, "add", -p), (2, "sub", p), (2, "sub", -p), (2, "op", 0),
           (3, "div", 1), (3, "arith", 1), (3, "arith", -1)]
    if 10 % p == 0:
        out += [(1, "add", 10), (1, "add", -10)]
    return out


def solve_sharing(x, slip=None):
    t = x["n"] + x["b"] + delta(slip, 1)
    r, op = (t + x["k"], "+") if is_op(slip, 2) else (t - x["k"] + delta(slip, 2), MINUS)
    divisor = x["p"] + 1 if slip and slip[:2] == (3, "div") else x["p"]
    if r % divisor:
        return None  # the slip would not give a whole number: not a plausible wrong answer
    e = r // divisor + (slip[2] if slip and slip[:2] == (3, "arith") else 0)
    return {"t": t, "r": r, "op": op, "pd": divisor, "e": e, "final": e, "_values": [t, r, e]}


def draw_percent(rng):
    while True:
        P, d, f = rng.randrange(40, 300, 20), rng.choice([10, 20, 25, 30, 40, 50]), rng.randint(4, 15)
        if P * d % 100 == 0:
            return {"P": P, "d": d, "f": f}


def slips_percent(x):
    step = x["P"] // 10  # the same as using a percentage 10 points too high or too low
    return [(1, "mul", step), (1, "mul", -step), (2, "sub", 10), (2, "sub", -10), (2, "op", 0),
            (3, "add", 10), (3, "add", -10), (3, "op", 0)]


def solve_percent(x, slip=None):
    disc = x["P"] * x["d"] // 100 + delta(slip, 1)
    y, op1 = (x["P"] + disc, "+") if is_op(slip, 2) else (x["P"] - disc + delta(slip, 2), MINUS)
    z, op2 = (y - x["f"], MINUS) if is_op(slip, 3) else (y + x["f"] + delta(slip, 3), "+")
    return {"x": disc, "y": y, "op1": op1, "z": z, "op2": op2, "final": z, "_values": [disc, y, z]}


def draw_time(rng):
    return {"name": rng.choice(FEMALE), "T0": rng.randint(7, 17) * 60 + rng.randrange(0, 60, 5),
            "t1": rng.randrange(15, 60, 5), "t2": rng.randrange(10, 30, 5), "t3": rng.randrange(20, 60, 5)}


def slips_time(x):
    out = [(s, "min", d) for s in (1, 2, 3) for d in (10, -10)]
    prev = x["T0"]
    for s, dur in ((1, x["t1"]), (2, x["t2"]), (3, x["t3"])):
        if (prev % 60) + dur >= 60:  # this step crosses the hour: carrying the hour twice is a plausible slip
            out.append((s, "carry", 60))
        prev += dur
    return out


def solve_time(x, slip=None):
    T1 = x["T0"] + x["t1"] + delta(slip, 1)
    T2 = T1 + x["t2"] + delta(slip, 2)
    T3 = T2 + x["t3"] + delta(slip, 3)
    return {"T1": T1, "T2": T2, "T3": T3, "final": T3, "_values": [T1, T2, T3]}


def draw_area(rng):
    while True:
        L, W = rng.randint(6, 12), rng.randint(4, 9)
        s = rng.randint(3, W - 1) if W > 3 else 0
        if W < L and s and L * W - s * s >= 15:
            return {"L": L, "W": W, "s": s}


def slips_area(x):
    return [(1, "mul", x["L"]), (1, "mul", -x["W"]), (2, "op", 0), (2, "mul", x["s"]), (2, "mul", -x["s"]),
            (3, "sub", 10), (3, "sub", -10), (3, "op", 0)]


def solve_area(x, slip=None):
    A = x["L"] * x["W"] + delta(slip, 1)
    s2 = 2 if is_op(slip, 2) else x["s"]  # logical slip: doubling the side instead of squaring it
    R = x["s"] * s2 + delta(slip, 2)
    U, op = (A + R, "+") if is_op(slip, 3) else (A - R + delta(slip, 3), MINUS)
    return {"A": A, "s2": s2, "R": R, "U": U, "op": op, "final": U, "_values": [A, R, U]}


def draw_logic(rng):
    people = rng.sample(range(8), 4)  # true order, first = tallest / oldest
    facts = []
    for hi, lo in zip(people, people[1:]):
        facts.append(("more", hi, lo) if rng.random() < 0.5 else ("less", lo, hi))
    rng.shuffle(facts)
    return {"rel": rng.choice(["height", "age"]), "people": people, "facts": facts, "q": rng.randint(0, 3)}


def slips_logic(x):
    q = x["q"]
    out = []
    if q in (0, 1):
        out.append((1, "swap12", 0))  # misreads the first fact
    if q in (1, 2):
        out.append((1, "swap23", 0))  # misreads the second fact
    if q in (2, 3):
        out.append((2, "swap34", 0))  # misreads the last fact
    out += [(3, "pick", d) for d in (1, -1) if 0 <= q + d <= 3]  # off-by-one when reading the list
    return out


def solve_logic(x, slip=None):
    p1, p2, p3, p4 = x["people"]
    kind = slip[1] if slip else None
    a, b, c = {"swap12": (p2, p1, p3), "swap23": (p1, p3, p2)}.get(kind, (p1, p2, p3))
    if kind == "swap34":
        xs, ys, order = p3, p4, [p1, p2, p4, p3]
    else:
        xs, ys, order = p4, p3, [a, b, c, p4]
    pos = x["q"] + (slip[2] if kind == "pick" else 0)
    return {"a": a, "b": b, "c": c, "x": xs, "y": ys, "order": order, "ans": order[pos],
            "final": order[pos], "_values": []}


TYPES = {  # subset -> (draw, slips, solve, steps that can hold the slip)
    "math-shopping": (draw_shopping, slips_shopping, solve_shopping, [1, 2, 3, 4]),
    "math-speed": (draw_speed, slips_speed, solve_speed, [1, 2, 3, 4]),
    "math-age": (draw_age, slips_age, solve_age, [1, 2, 3, 4]),
    "math-sharing": (draw_sharing, slips_sharing, solve_sharing, [1, 2, 3]),
    "math-percent": (draw_percent, slips_percent, solve_percent, [1, 2, 3]),
    "math-time": (draw_time, slips_time, solve_time, [1, 2, 3]),
    "math-area": (draw_area, slips_area, solve_area, [1, 2, 3]),
    "logic-order": (draw_logic, slips_logic, solve_logic, [1, 2, 3]),
}


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def render_math(subset, lang, params, fields):
    fmt = LangFormatter(lang)
    values = dict(params)
    values.update({k: v for k, v in fields.items() if not k.startswith("_")})
    if "name" in values:
        values["name"] = Name(lang, values["name"])
    tpl = TEMPLATES[subset][lang]
    return fmt.format(tpl["prompt"], **values), fmt.format(tpl["answer"], **values)


def render_logic(lang, params, fields):
    fmt = LangFormatter(lang)
    block = LOGIC[lang][params["rel"]]
    name = lambda i: Name(lang, i)  # noqa: E731
    end = SENT_END.get(lang, ". ")
    facts = "".join(fmt.format(block[kind], x=name(x), y=name(y)) + end for kind, x, y in params["facts"]).strip()
    prompt = fmt.format(LOGIC[lang]["prompt"], intro=block["intro"], facts=facts, q=block["q"][params["q"]])
    ans = name(fields["ans"])
    qa_list = block.get("qa")  # the asked position, agreeing with the gender of the named person
    qa = qa_list[params["q"]][ans.gender == "f"] if qa_list else block["q"][params["q"]]
    order = LIST_JOIN[lang]([str(name(i)) for i in fields["order"]])
    steps = [fmt.format(block["step1"], a=name(fields["a"]), b=name(fields["b"]), c=name(fields["c"])),
             fmt.format(block["step2"], x=name(fields["x"]), y=name(fields["y"]), order=order),
             fmt.format(block["step3"], qa=qa, ans=ans)]
    return prompt, ("" if lang == "zh" else " ").join(steps)


def render(subset, lang, params, fields):
    if subset == "logic-order":
        return render_logic(lang, params, fields)
    return render_math(subset, lang, params, fields)


# --------------------------------------------------------------------------------------------
# Independent check of the correct answer (not using solve_*), and item checks.
# --------------------------------------------------------------------------------------------
def expected_answer(subset, x):
    if subset == "math-shopping":
        return x["m"] - (x["a"] * x["p"] + x["b"] * x["q"])
    if subset == "math-speed":
        return x["D"] - (x["v"] * x["h1"] + x["w"] * x["h2"])
    if subset == "math-age":
        return 2 * x["n"] + x["a"] * (x["k"] + 1)
    if subset == "math-sharing":
        left = x["n"] + x["b"] - x["k"]
        return left // x["p"] if left % x["p"] == 0 else None
    if subset == "math-percent":
        return x["P"] * (100 - x["d"]) // 100 + x["f"]
    if subset == "math-time":
        return x["T0"] + x["t1"] + x["t2"] + x["t3"]
    if subset == "math-area":
        return x["L"] * x["W"] - x["s"] ** 2
    if subset == "logic-order":  # brute force: the only ranking consistent with the stated facts
        people = sorted(x["people"])
        fits = []
        for perm in itertools.permutations(people):
            rank = {p: i for i, p in enumerate(perm)}  # 0 = tallest / oldest
            if all((rank[a] < rank[b]) if kind == "more" else (rank[a] > rank[b]) for kind, a, b in x["facts"]):
                fits.append(perm)
        return fits[0][x["q"]] if len(fits) == 1 else None
    return None


def plausible(fields):
    return fields is not None and all(3 <= v < 24 * 60 for v in fields["_values"])


def problems_of(subset, params, good, bad, texts):
    """Return a list of problems (empty when the item is fine)."""
    out = []
    exp = expected_answer(subset, params)
    if exp is None or good["final"] != exp:
        out.append(f"correct answer mismatch: solve={good['final']} independent={exp}")
    if bad["final"] == exp:
        out.append("rejected final answer equals the correct one")
    for lang in LANGS:
        t = texts[lang]
        if not all(t.values()):
            out.append(f"{lang}: empty field")
        if t["chosen"] == t["rejected"]:
            out.append(f"{lang}: chosen == rejected")
        ratio = len(t["rejected"]) / len(t["chosen"])
        if not 0.85 <= ratio <= 1.15:
            out.append(f"{lang}: length ratio {ratio:.3f}")
        if "{" in t["prompt"] + t["chosen"] + t["rejected"]:
            out.append(f"{lang}: unformatted placeholder")
    en = texts["en"]
    if subset == "logic-order":
        tail = NAMES["en"][exp] if exp is not None else "?"
        if not en["chosen"].endswith(f"is {tail}."):
            out.append("en chosen does not end with the correct name")
    else:
        show = clock("en", exp) if subset == "math-time" else str(exp)
        nums = re.findall(r"\d+(?::\d\d)?", en["chosen"])
        if not nums or nums[-1] != show:
            out.append(f"en chosen's last number {nums[-1:]} != {show}")
    return out


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------
def build_type(subset, rng):
    draw, slips, solve, steps = TYPES[subset]
    targets = (steps * ITEMS_PER_TYPE)[:ITEMS_PER_TYPE]
    rng.shuffle(targets)  # balanced, shuffled choice of the step that holds the slip
    items = []
    for target in targets:
        found, kind, tries = None, None, 0
        while found is None:
            params = draw(rng)
            good = solve(params)
            options = [s for s in slips(params) if s[0] == target]
            if not options:
                continue
            if kind is None or tries > 50:  # kind of slip: drawn once per item, uniformly over kinds
                kind, tries = rng.choice(sorted({s[1] for s in options})), 0
            options = [s for s in options if s[1] == kind]
            rng.shuffle(options)
            tries += 1
            for slip in options:
                bad = solve(params, slip)
                if plausible(good) and plausible(bad) and bad["final"] != good["final"]:
                    found = (slip, bad)
                    break
        slip, bad = found
        texts = {}
        for lang in LANGS:
            prompt, chosen = render(subset, lang, params, good)
            _, rejected = render(subset, lang, params, bad)
            texts[lang] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        items.append((params, good, bad, slip, texts))
    return items


def build(seed=13):
    rng = random.Random(seed)
    records, problems = [], []
    n = 0
    for subset in TYPES:
        for params, good, bad, slip, texts in build_type(subset, rng):
            n += 1
            item_id = f"reasoning-{n:03d}"
            problems += [f"{item_id}: {p}" for p in problems_of(subset, params, good, bad, texts)]
            record = {"id": item_id, "category": "reasoning", "subset": subset}
            record.update(texts)
            records.append(record)
    return records, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent
                                             / "xlrm_lib" / "benchmark" / "items" / "reasoning.jsonl"))
    args = parser.parse_args(argv)
    records, problems = build(args.seed)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s); nothing written.", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} items to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
