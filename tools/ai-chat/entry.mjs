// The vendored bundle's entry: `Chat` over the pinned `ai` package, for browsers.
import { AbstractChat } from "ai";
import { chatClass } from "./chat-class.mjs";

export const Chat = chatClass(AbstractChat);
export { AbstractChat };
