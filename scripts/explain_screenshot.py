"""Screenshot of a `zoo explain` page in headless Chromium (the OS's, through its chromedriver), for the README.

python scripts/explain_screenshot.py runs/demo/explain.html docs/explain.png [--unit h:165] [--hover 120]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selenium import webdriver
from selenium.webdriver import ActionChains
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import Select


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--unit", help="colour the text by this unit (layer:index) instead of surprise")
    parser.add_argument("--hover", type=int, default=60, help="the character whose top-k the panel shows")
    parser.add_argument("--size", default="1200,760")
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={args.size}", "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(args.page.resolve().as_uri())
        driver.find_element("css selector", "body[data-ready='1']")
        if args.unit:
            Select(driver.find_element("css selector", "select#unit")).select_by_value(args.unit)
        ActionChains(driver).move_to_element(driver.find_element("css selector", f"span.ch[data-i='{args.hover}']")).perform()
        driver.save_screenshot(str(args.png))
    finally:
        driver.quit()
    print(args.png)


if __name__ == "__main__":
    main()
