"""Builds sample.jsonl, the labelled PII sample that bench/bench_pii.py and the unit tests measure.

Every text below was written for this sample; none comes from a real person. PII is marked inline
as [[entity|text]] and becomes a span with character offsets. Phone numbers are from the ranges
set aside for fiction where one exists (US 555-01xx, UK 020 7946 0xxx and 0113 496 0xxx, France
01 99 00); card numbers are the networks' published test numbers or Luhn-valid numbers made up
here; IBANs are the standard's printed examples or checksummed here. Lines marked `# neg` hold no
PII and are hard negatives: things a careless detector takes for PII.

    .venv/bin/python tests/data/pii/build_sample.py   # rewrites sample.jsonl next to this file
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
_MARK = re.compile(r"\[\[(\w+)\|(.+?)\]\]")


def luhn_complete(prefix: str) -> str:
    """`prefix` plus the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return prefix + str((10 - total % 10) % 10)


def iban(country: str, bban: str) -> str:
    """An IBAN with its mod-97 check digits."""
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def spaced(text: str, sep: str = " ") -> str:
    return sep.join(text[i : i + 4] for i in range(0, len(text), 4))


CARD_A = luhn_complete("453201511283036")
CARD_B = luhn_complete("542523343010990")
CARD_C = luhn_complete("601100099013942")
CARD_D = luhn_complete("491761234567890")
IBAN_A = iban("DE", "500105175407324931")
IBAN_B = iban("GB", "NWBK60161331926819")
IBAN_C = iban("FR", "30006000011234567890189")
IBAN_D = iban("NL", "RABO0300065264")

POSITIVES = f"""
Send the quarterly report to [[email|maria.gonzalez@acme-corp.com]] by Friday.
Reach me at [[email|j.doe+newsletter@gmail.com]] if the build breaks again.
From: [[email|support@helpdesk.example.org]]
Write to mailto:[[email|sales@contoso.co.uk]] for a quote.
<a href="mailto:[[email|info@bakery-lisboa.pt]]">write to us</a>
cc: [[email|TOM.HANSEN@Firma.DE]]; [[email|l.nguyen@uni-heidelberg.de]]
Her address, [[email|a_b-c.d@sub.domain.io]], bounced twice this week.
git config --global user.email "[[email|dev.ops42@company.net]]"
user = User(name="sam", email="[[email|sam.k@startup.ai]]")
Contact: [[email|priya_r@outlook.in]] or leave a note at the front desk.
The alert came from [[email|noreply@github.com]] at midnight.
Please unsubscribe [[email|oliver.twist1838@yahoo.co.uk]] from the mailing list.
My work email is [[email|k.yamamoto@global-logistics.jp]], my personal one is [[email|kenji.y@icloud.com]].
Forward the invoice to [[email|accounts.payable@northwind-traders.com]].
"reply_to": "[[email|feedback@shop.example.net]]",
Can you check why [[email|r.o'brien@dublin-tech.ie]] gets no password reset mail?
The form was submitted by [[email|anna-lena.schmidt@web.de]] on Monday.
Email [[email|hr@mycompany.org]] with your availability.
The owner of the repo is [[email|lucas.martin@proton.me]].
Signed up as [[email|zz_top_fan_1999@hotmail.com]] years ago.
Call us at [[phone|(212) 555-0147]] between 9 and 5.
My cell is [[phone|212-555-0198]], text first.
Dial [[phone|+1 202 555 0111]] for the front office.
The London office: [[phone|020 7946 0958]].
From abroad, ring [[phone|+44 20 7946 0321]].
Leeds branch, tel. [[phone|0113 496 0277]].
Berlin: [[phone|+49 30 901820]] (reception).
Unser Büro erreichen Sie unter [[phone|030 12345678]].
Mobil: [[phone|+49 171 1234567]]
Appelez le [[phone|01 99 00 12 34]] pour réserver.
Depuis l'étranger : [[phone|+33 1 99 00 56 78]].
Son portable : [[phone|06 12 34 56 78]].
Customer care India: [[phone|+91 98765 43210]].
Tel Aviv desk: [[phone|+972 3-555-0123]].
Toronto support line [[phone|(416) 555-0182]].
São Paulo: [[phone|+55 11 91234-5678]].
Amsterdam: [[phone|+31 20 794 0123]].
Sydney office [[phone|+61 2 9876 5432]].
Phone: [[phone|415.555.0132]]
Reach the on-call engineer at [[phone|+1-415-555-0132]].
Text me at [[phone|4155550139]] when you land.
Leave a voicemail at [[phone|1 (800) 555-0199]] and we will call back.
If the pager fails, call [[phone|+1 (646) 555-0163]] or [[phone|+44 113 496 0415]].
The card on file is [[credit_card|4111 1111 1111 1111]].
Charge [[credit_card|4012 8888 8888 1881]] for the renewal.
Mastercard [[credit_card|5555 5555 5555 4444]] expired last month.
Use card number [[credit_card|2223-0031-2200-3222]] in the sandbox.
Amex: [[credit_card|3782 822463 10005]]
Her Amex [[credit_card|371449635398431]] was declined.
Discover [[credit_card|6011111111111117]], exp 09/27.
Paid with [[credit_card|6011 0009 9013 9424]].
JCB card [[credit_card|3530111333300000]] on the booking.
Diners Club [[credit_card|30569309025904]].
The customer read out [[credit_card|{spaced(CARD_A)}]] over the phone.
Card: [[credit_card|{spaced(CARD_B, "-")}]] CVV 123
card_number = "[[credit_card|{CARD_C}]]"
He typed [[credit_card|{CARD_D}]] into the chat by mistake.
Refund to [[credit_card|4242 4242 4242 4242]], please.
Visa ending in 1111: [[credit_card|4111111111111111]].
Transfer the deposit to [[iban|DE89 3704 0044 0532 0130 00]].
IBAN: [[iban|GB82 WEST 1234 5698 7654 32]]
Virement sur le compte [[iban|FR14 2004 1010 0505 0001 3M02 606]].
Rekeningnummer [[iban|NL91 ABNA 0417 1643 00]].
Cuenta: [[iban|ES91 2100 0418 4502 0005 1332]]
Bonifico su [[iban|IT60 X054 2811 1010 0000 0123 456]].
Zahlung an [[iban|CH93 0076 2011 6238 5295 7]].
Pay rent to [[iban|BE68539007547034]] by the 3rd.
Konto [[iban|AT611904300234573201]].
Przelew na [[iban|PL61 1090 1014 0000 0712 1981 2874]].
Account [[iban|SE45 5000 0000 0583 9825 7466]].
Send it to [[iban|{spaced(IBAN_A)}]] before noon.
iban = "[[iban|{IBAN_B}]]"
RIB: [[iban|{spaced(IBAN_C)}]]
Please wire the refund to [[iban|{IBAN_D}]].
Donations: [[iban|IE29 AIBK 9311 5212 3456 78]].
The server at [[ip_address|203.0.113.42]] stopped answering pings.
ssh admin@[[ip_address|198.51.100.7]]
Set DB_HOST=[[ip_address|10.0.0.5]] in the env file.
curl http://[[ip_address|192.168.1.20]]:8080/health
The router is at [[ip_address|192.168.0.1]].
Block traffic from [[ip_address|185.199.108.153]] at the firewall.
Allow the subnet [[ip_address|172.16.0.0/12]].
Client IP: [[ip_address|81.2.69.160]]
Failed login from [[ip_address|2001:db8:85a3::8a2e:370:7334]].
The link-local address is [[ip_address|fe80::1ff:fe23:4567:890a]].
IPv6 gateway [[ip_address|2001:0db8:0000:0000:0000:ff00:0042:8329]].
nameserver [[ip_address|8.8.8.8]]
The VPN assigned me [[ip_address|100.64.12.9]].
[2024-03-01 12:00:01] GET /login from [[ip_address|66.249.66.1]] 200
Bind the service to [[ip_address|0.0.0.0]] only in the container.
The printer got [[ip_address|10.10.4.23]] from DHCP.
Whitelisted: [[ip_address|52.14.200.1]], [[ip_address|52.14.200.2]].
Ping [[ip_address|127.0.0.1]] to test the loopback.
Add [[ip_address|2606:4700:4700::1111]] as a resolver.
The attacker used [[ip_address|45.33.32.156]] and rotated every hour.
postgres://[[url_secret|app_user:S3cr3tPa55]]@db.internal.example.com:5432/app
https://api.example.com/v1/items?api_key=[[url_secret|9f8e7d6c5b4a3210]]&page=2
GET /oauth/callback?access_token=[[url_secret|ya29.a0AfH6SMBx3]]&expires_in=3600
Post to https://hooks.example.com/services?token=[[url_secret|xoxb-1234-abcd-5678]] when done.
redis://[[url_secret|default:hunter2hunter2]]@cache.example.net:6379/0
https://bucket.s3.amazonaws.com/report.pdf?X-Amz-Credential=[[url_secret|AKIAIOSFODNN7/20240101/us-east-1/s3/aws4_request]]&X-Amz-Signature=[[url_secret|fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024]]
ftp://[[url_secret|anna:qwerty2024]]@files.example.org/pub/
Reset link: https://example.com/reset#token=[[url_secret|d41d8cd98f00b204e980]]
https://accounts.example.com/token?client_id=abc&client_secret=[[url_secret|GOCSPX-abc123def456]]
Login via https://legacy.example.com/login?user=bob&password=[[url_secret|Tr0ub4dor3]]
https://cdn.example.com/video.mp4?expires=1700000000&sig=[[url_secret|K8s9dfj3kLmN]]
<script src="https://maps.example.com/api/js?key=[[url_secret|AIzaSyD-EXAMPLEKEY123]]"></script>
amqp://[[url_secret|guest:rabbitPass99]]@mq.example.com:5672/
mongodb+srv://[[url_secret|admin:Xy7pq2wz]]@cluster0.abcde.mongodb.net/test
git clone https://[[url_secret|oauth2:glpat-x1y2z3w4v5]]@gitlab.example.com/team/app.git
The webhook https://example.com/hook?auth_token=[[url_secret|5f2b9c0e1a]] leaked in the log.
wss://stream.example.io/feed?apikey=[[url_secret|c0ffee1234beef]]
https://example.com/download?session_id=[[url_secret|8c1f2e3d4b5a6978]]
Dear [[person|Sarah O'Connor]], thank you for your application.
[[person|Rajesh Kumar]] approved the pull request this morning.
Interview notes with [[person|Mei Ling Chen]], senior designer.
Ask [[person|Thomas Müller]] whether the invoice was paid.
The patient, [[person|John Smith]], was admitted on Tuesday.
Minutes taken by [[person|Fatima Al-Sayed]].
[[person|Emily Johnson]] and [[person|Michael Brown]] will lead the workshop.
Explain [[person|Albert Einstein]]'s theory of special relativity in simple terms.
Write a short biography of [[person|Marie Curie]].
Summarise the speech [[person|Martin Luther King Jr.]] gave in 1963.
Compare the leadership styles of [[person|Abraham Lincoln]] and [[person|Winston Churchill]].
My landlord, [[person|Peter Novak]], never fixes the heating.
Please forward this to [[person|Olivia Davis]] in accounting.
Signed, [[person|David Kim]]
Our new intern [[person|Lucas Ferreira]] starts on Monday.
The award went to [[person|Aisha Bello]] for her thesis.
What did [[person|Ada Lovelace]] contribute to computing?
[[person|Carlos Mendoza]] called about the delayed shipment.
Draft a thank-you note to [[person|Hannah Schmidt]] for hosting us.
I met [[person|James Wilson]] at the conference in Boston.
Contact [[person|Laura Rossi]] at [[email|laura.rossi@example-studio.it]] or [[phone|+39 02 1234 5678]].
Bill to [[person|Robert Taylor]], card [[credit_card|4111 1111 1111 1111]], phone [[phone|(312) 555-0110]].
Payroll: [[person|Anna Kowalski]], IBAN [[iban|PL61 1090 1014 0000 0712 1981 2874]], [[email|a.kowalski@firma.pl]]
Incident: login for [[email|ops@example-bank.com]] from [[ip_address|203.0.113.77]] at 03:12.
DATABASE_URL=postgres://[[url_secret|svc:Pa55w0rdXYZ]]@[[ip_address|10.0.3.4]]:5432/prod
Customer [[person|Grace Lee]] ([[phone|+1 415 555 0175]]) asked for a refund to [[credit_card|5555 5555 5555 4444]].
Send the contract to [[email|legal@partner-firm.com]] and copy [[person|Daniel Wright]].
The logs show [[ip_address|198.51.100.23]] hitting /admin with ?token=[[url_secret|abcd1234efgh5678]].
Wire [[iban|GB82 WEST 1234 5698 7654 32]] and confirm by phone at [[phone|020 7946 0011]].
From [[person|Nina Petrova]] <[[email|nina.petrova@mail.example.ru]]>: the server [[ip_address|192.0.2.15]] is down.
"""

NEGATIVES = """
Upgrade to Python 3.11.7 before running the tests.
Pin numpy==1.26.4 and pandas==2.2.1 in requirements.txt.
The release v2.10.4-rc1 fixes the memory leak.
Windows build 10.0.19045.3803 ships the patch.
The meeting is on 2024-03-15 at 10:30:45 UTC.
Deadline: 15/03/2024, 12:00 PM.
The book's ISBN is 978-0-306-40615-7.
ISBN-10: 0-306-40615-2
Order #4820-1133-0921 shipped yesterday.
Invoice INV-2024-000123 is overdue.
Your tracking number is 1Z999AA10123456784.
@property
def __init__(self, name: str) -> None:
evens = numbers[::2]
std::vector<int> values;
SELECT * FROM users WHERE id = 42;
@app.route("/users/<int:user_id>")
npm install @types/node@18.11.9 --save-dev
pip install requests==2.31.0
@dataclass(frozen=True)
The card number 4111 1111 1111 1112 fails the Luhn check.
Try 1234 5678 9012 3456 as an obviously fake card.
A card number has 16 digits, like 0000 0000 0000 0000.
DE89 3704 0044 0532 0130 01 is a mistyped IBAN.
GB00 WEST 1234 5698 7654 32 has a wrong check digit.
The population was 8,336,817 in 2022.
Pi is roughly 3.14159265358979.
Call extension 4412 for the help desk.
Room 1204 is on floor 12.
The zip code 90210 is in Beverly Hills.
Coordinates: 40.7128, -74.0060
World War I lasted from 1914-1918.
Employee ID 12345678 has no manager set.
Ref: 2023/11/0042
The final score was 98-95.
The speed of light is about 3 x 10^8 m/s.
See https://docs.python.org/3/library/re.html for details.
https://example.com/search?q=hash+map&page=2
https://github.com/example/repo/blob/main/README.md
Set the URL to https://api.example.com/v1/items?api_key=YOUR_API_KEY
Use postgres://user:password@localhost:5432/mydb in development.
Replace <token> in https://example.com/hook?token=<token> with yours.
https://example.com/feed?key=value&sort=asc
mysql://root:${DB_PASSWORD}@db.example.com/app
The Apple iPhone 15 was released in September.
Prove the Pythagorean theorem.
Mount Everest is 8,849 metres tall.
The Amazon river flows through Brazil.
Java and Python are both popular languages.
Victoria Falls lies on the Zambezi river.
Write a haiku about the ocean.
Sort the list [5, 3, 8, 1] in ascending order.
What is 2 + 2 * 3?
Explain the difference between TCP and UDP.
The commit hash is 3f2a9c1b7d4e8f6a0b1c2d3e4f5a6b7c8d9e0f1a.
UUID: 123e4567-e89b-12d3-a456-426614174000
The price went from $1,299.99 to $999.00.
Temperature: -12.5 °C at 06:45.
HTTP 404 means the page was not found.
Chapter 3.2.1 covers recursion.
The model has 7,000,000,000 parameters.
chmod 755 deploy.sh && ./deploy.sh --port 8080
regex: ^[\\w.+-]+@[\\w-]+\\.[\\w.]+$
Twitter handle @nasa posts daily.
The function returns 0xDEADBEEF on error.
Lat/long 51.5074° N, 0.1278° W.
The password must be at least 12 characters long.
Bitcoin block 840000 was mined in April.
EAN barcode 4006381333931 on the box.
A MAC address looks like 00:1A:2B:3C:4D:5E.
Time codes: 01:02:03:04 in the edit list.
The ratio 16:9 suits widescreen video.
Use the token bucket algorithm for rate limiting.
Call the function with key=value pairs.
Our office hours are 9-17, Monday to Friday.
Bus 42 leaves every 15 minutes.
The tax rate is 19%, VAT number not required.
"""

# Written after the recognizers were tuned on the texts above, and measured once: the numbers on
# these say how the scrubber does on text it was not fitted to.
CARD_E = luhn_complete("400000000000000")
IBAN_E = iban("DE", "120300000000202051")
HELD_OUT_POSITIVES = f"""
Ping me on [[email|chris.p@northfield-labs.com]] about the demo.
The signup list has [[email|x.ali@student.uni-koeln.de]] twice.
Billing contact — [[email|billing.team@hostingco.io]]
Her reply came from [[email|m.rossi@libero.it]] late at night.
Forwarded message from <[[email|jonas.berg@posteo.de]]>
Our hotline [[phone|(303) 555-0190]] is open on weekends.
In the UK call [[phone|0113 496 0780]] and ask for Alex.
Rufen Sie [[phone|+49 89 12345678]] an.
WhatsApp: [[phone|+44 7700 900123]]
Fax [[phone|+1 312 555 0102]] the signed form.
The test Visa [[credit_card|4000 0000 0000 0002]] always declines.
Stored card: [[credit_card|{spaced(CARD_E)}]]
She paid with Amex [[credit_card|3400 000000 00009]] at the hotel.
Charge it to [[credit_card|5105 1051 0510 5100]].
Account holder IBAN [[iban|{spaced(IBAN_E)}]]
Remit to [[iban|LU28 0019 4006 4475 0000]] within 30 days.
Payment details: [[iban|FI21 1234 5600 0007 85]]
Unauthorised access from [[ip_address|203.0.113.200]] was blocked.
Set the upstream to [[ip_address|10.20.30.40]]:9000 in nginx.conf.
The host resolves to [[ip_address|2001:db8::ff00:42:8329]].
ssh -i key.pem ubuntu@[[ip_address|54.210.33.12]]
sftp://[[url_secret|deploy:9xK2mQ7vB]]@backup.example.com/nightly
https://api.example.org/data.json?access_token=[[url_secret|EAAG5hRZCz0BA]]
https://example.net/invite?token=[[url_secret|b7e1c3d9a2f4]]&lang=en
https://files.example.com/share?download=1&signature=[[url_secret|Zm9vYmFyYmF6cXV4]]
[[person|Elena Petrova]] will present the results on Thursday.
Thanks to [[person|Yusuf Demir]] for reviewing the draft.
Write a limerick about [[person|Isaac Newton]] and an apple.
The witness, [[person|Margaret Hughes]], saw the car at 9 pm.
Message from [[person|Tobias Lindqvist]]: [[email|tobias.l@example-shop.se]], [[phone|+46 8 123 456 78]].
"""

HELD_OUT_NEGATIVES = """
Python 3.12.1 deprecates some of the datetime helpers.
The build number is 2024.11.3.
Use ISBN 978-1-4028-9462-6 when you cite the book.
Order number 7781-2204-5519 is ready for pickup.
arr[::-1] reverses a list in Python.
Vector<int>::iterator it = v.begin();
The card 4000 0000 0000 0001 fails the checksum.
Our phone tree has options 1-9.
Step 3: multiply 1,234 by 5,678.
See https://en.wikipedia.org/wiki/Graph_theory for background.
Set ?page=3&per_page=50 to get the next results.
https://example.com/login?redirect=/dashboard
curl -H "Authorization: Bearer $TOKEN" https://api.example.com/me
The Eiffel Tower was finished in 1889.
Convert 100 degrees Fahrenheit to Celsius.
The matrix is 3x3 with determinant -2.
The file size is 1,048,576 bytes.
The train departs at 17:45 from platform 9.
"""


def records() -> list[dict]:
    out = []
    blocks = (("positive", "tuned", POSITIVES), ("negative", "tuned", NEGATIVES),
              ("positive", "held_out", HELD_OUT_POSITIVES), ("negative", "held_out", HELD_OUT_NEGATIVES))
    for kind, split, block in blocks:
        for line in block.strip().splitlines():
            text, spans, last = "", [], 0
            for m in _MARK.finditer(line):
                text += line[last : m.start()]
                spans.append({"entity": m.group(1), "start": len(text), "end": len(text) + len(m.group(2)),
                              "text": m.group(2)})
                text += m.group(2)
                last = m.end()
            text += line[last:]
            out.append({"id": len(out) + 1, "kind": kind, "split": split, "text": text, "spans": spans})
    return out


if __name__ == "__main__":
    rows = records()
    with open(HERE / "sample.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} texts, {sum(len(r['spans']) for r in rows)} spans -> {HERE / 'sample.jsonl'}")
